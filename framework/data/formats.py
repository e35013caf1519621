"""The row formats each data kind accepts, in one place, and auto-detection from columns."""

from __future__ import annotations

from typing import Mapping, Sequence

from framework.artifacts import COMPARISONS, DEMONSTRATIONS, PROMPTS, TEXT
from framework.data.report import BadRowError
from framework.errors import DataError

AUTO = "auto"

# kind -> format -> the columns that identify it (the first format whose columns are all
# present wins when `format: auto`, so more specific formats come first).
FORMATS: dict[str, dict[str, tuple[str, ...]]] = {
    DEMONSTRATIONS: {
        "messages": ("messages",),
        "prompt_completion": ("prompt", "completion"),
        "alpaca": ("instruction", "output"),
        "hh": ("chosen", "rejected"),  # Anthropic HH-RLHF: SFT on the chosen dialogue
    },
    COMPARISONS: {
        "ranking": ("prompt", "responses"),
        "pairs": ("prompt", "chosen", "rejected"),
        # Anthropic HH-RLHF dialogue text; chosen/rejected as message lists are read as the
        # implicit-prompt `pairs` form (comparisons.to_pairs tells them apart by type).
        "hh": ("chosen", "rejected"),
    },
    PROMPTS: {
        "prompt": ("prompt",),
        "messages": ("messages",),
        "alpaca": ("instruction",),
        "hh": ("chosen", "rejected"),  # the chosen dialogue before its last Assistant reply
    },
    TEXT: {
        "text": ("text",),
    },
}


def detect_format(kind: str, fmt: str, columns: Sequence[str], where: str) -> str:
    """The format to parse rows of `kind` with: `fmt` itself, or the one its columns match."""
    known: Mapping[str, tuple[str, ...]] = FORMATS[kind]
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


def row_error(where: str, row: int, field: str, problem: str, fix: str) -> BadRowError:
    """The one shape of a bad-row message: where, which row, which field, what, and the fix."""
    return BadRowError(where, problem, fix, row=row, field=field)
