"""The row formats each data kind accepts, as an open registry, and auto-detection from columns.

A format names the columns that identify it and a parser `(row, where, i) -> parsed row` whose
result is the kind's parsed form (demonstrations: (prompt messages, response text); comparisons:
(prompt messages, [(chosen, rejected), ...]); prompts: prompt messages; text: a string). A plugin
package adds a format through the entry-point group `framework.data_formats`, named
`KIND.FORMAT` and pointing at a `DataFormat`::

    [project.entry-points."framework.data_formats"]
    "demonstrations.qa" = "example_rlhf_plugin.formats:QA"
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, Union

from framework.artifacts import COMPARISONS, DEMONSTRATIONS, FEEDBACK, PROMPTS, TEXT
from framework.data.report import BadRowError
from framework.errors import DataError, PluginError
from framework.registry import Registry

AUTO = "auto"


@dataclass(frozen=True)
class DataFormat:
    kind: str
    name: str
    columns: tuple[str, ...]  # all present: `format: auto` picks this format
    # (row, where, i) -> the kind's parsed row; "module:function" is imported on first use
    parse: Union[str, Callable[[dict, str, int], Any]]

    def parser(self) -> Callable[[dict, str, int], Any]:
        if callable(self.parse):
            return self.parse
        module, _, name = self.parse.partition(":")
        return getattr(importlib.import_module(module), name)


def _check_format(name: str, obj: Any, source: str) -> None:
    if not isinstance(obj, DataFormat):
        raise PluginError(f"The data format {name!r} from {source} is {obj!r}, not a "
                          f"framework.data.formats.DataFormat.")
    if name != f"{obj.kind}.{obj.name}":
        raise PluginError(f"The data format registered as {name!r} by {source} is "
                          f"{obj.kind}.{obj.name}; name its entry point KIND.FORMAT.")


formats: Registry[DataFormat] = Registry("data format", "framework.data_formats",
                                         check=_check_format)


def register_format(fmt: DataFormat, source: str = "registered") -> DataFormat:
    formats.register(f"{fmt.kind}.{fmt.name}", fmt, source=source)
    return fmt


# The built-in formats, most specific first within a kind (auto-detection takes the first whose
# columns are all present).
_DEMO, _CMP, _PROMPT, _FB = ("framework.data.demonstrations", "framework.data.comparisons",
                             "framework.data.prompts", "framework.data.feedback")
_BUILTIN_FORMATS = (
    DataFormat(DEMONSTRATIONS, "messages", ("messages",), f"{_DEMO}:from_messages"),
    DataFormat(DEMONSTRATIONS, "prompt_completion", ("prompt", "completion"),
               f"{_DEMO}:from_prompt_completion"),
    DataFormat(DEMONSTRATIONS, "alpaca", ("instruction", "output"), f"{_DEMO}:from_alpaca"),
    # Anthropic HH-RLHF: SFT on the chosen dialogue
    DataFormat(DEMONSTRATIONS, "hh", ("chosen", "rejected"), f"{_DEMO}:from_hh"),
    DataFormat(COMPARISONS, "ranking", ("prompt", "responses"), f"{_CMP}:ranking_row"),
    DataFormat(COMPARISONS, "pairs", ("prompt", "chosen", "rejected"), f"{_CMP}:pairs_row"),
    # Anthropic HH-RLHF dialogue text; chosen/rejected as message lists are read as the
    # implicit-prompt `pairs` form (comparisons.hh_or_pairs_row tells them apart by type).
    DataFormat(COMPARISONS, "hh", ("chosen", "rejected"), f"{_CMP}:hh_or_pairs_row"),
    DataFormat(PROMPTS, "prompt", ("prompt",), f"{_PROMPT}:from_prompt"),
    DataFormat(PROMPTS, "messages", ("messages",), f"{_PROMPT}:from_messages"),
    DataFormat(PROMPTS, "alpaca", ("instruction",), f"{_PROMPT}:from_alpaca"),
    # the chosen dialogue before its last Assistant reply
    DataFormat(PROMPTS, "hh", ("chosen", "rejected"), f"{_PROMPT}:from_hh"),
    DataFormat(TEXT, "text", ("text",), f"{_PROMPT}:from_text"),
    # KTO's unpaired feedback: a boolean label (TRL's and LLaMA-Factory's KTO data), or a 1-7
    # score that the kto stage's rule turns into one
    DataFormat(FEEDBACK, "messages", ("messages", "label"), f"{_FB}:from_messages"),
    DataFormat(FEEDBACK, "labelled", ("prompt", "completion", "label"), f"{_FB}:from_labelled"),
    DataFormat(FEEDBACK, "scored", ("prompt", "completion", "score"), f"{_FB}:from_scored"),
)
for _fmt in _BUILTIN_FORMATS:
    register_format(_fmt, source="rlhf-framework")
_ORDER = {f"{f.kind}.{f.name}": i for i, f in enumerate(_BUILTIN_FORMATS)}


def formats_of(kind: str) -> Mapping[str, DataFormat]:
    """The formats of `kind`, name -> DataFormat: the built-in ones in their order, then those
    of installed packages by name."""
    names = [n for n in formats.names() if n.split(".", 1)[0] == kind]
    names.sort(key=lambda n: (n not in _ORDER, _ORDER.get(n, 0), n))
    return {formats.get(n).name: formats.get(n) for n in names}


def data_kinds() -> list[str]:
    """Kinds a `data.NAME` source can provide: those with at least one format."""
    return sorted({n.split(".", 1)[0] for n in formats.names()})


def detect_format(kind: str, fmt: str, columns: Sequence[str], where: str) -> str:
    """The format to parse rows of `kind` with: `fmt` itself, or the one its columns match."""
    known = {name: f.columns for name, f in formats_of(kind).items()}
    expected = "; ".join(f"{name}: {', '.join(cols)}" for name, cols in known.items())
    if fmt != AUTO:
        if fmt not in known:
            raise DataError(
                f"{where}: format {fmt!r} is not a {kind} format. Use one of: auto, "
                f"{', '.join(known)}."
            )
        missing = [c for c in known[fmt] if c not in columns]
        if missing:
            raise DataError(
                f"{where}: format {fmt!r} needs column(s) {', '.join(missing)}, but the data has "
                f"{', '.join(columns) or 'no columns'}. Rename columns with the source's `columns` "
                f"(e.g. {{old_name: {missing[0]}}}) or set its `format`."
            )
        return fmt
    for name, cols in known.items():
        if all(c in columns for c in cols):
            return name
    raise DataError(
        f"{where}: cannot tell the {kind} format from the columns {', '.join(columns) or '(none)'}."
        f" Expected one of these column sets: {expected}. Rename columns with the source's "
        f"`columns` or set its `format`."
    )


def parse_rows(kind: str, fmt: str, rows, where: str, bad_rows) -> list:
    """Each row of `rows` (a datasets.Dataset) parsed by its format of `kind` (`fmt` or the
    one its columns match); a bad row raises, or `bad_rows` leaves it out and reports it."""
    parse = formats_of(kind)[detect_format(kind, fmt, rows.column_names, where)].parser()
    values = []
    for i, value in bad_rows.parsed(rows, lambda row, i: parse(row, where, i)):
        values.append(value)
        bad_rows.kept(i)
    return values


def row_error(where: str, row: int, field: str, problem: str, fix: str) -> BadRowError:
    """The one shape of a bad-row message: where, which row, which field, what, and the fix."""
    return BadRowError(where, problem, fix, row=row, field=field)
