"""Where rows come from: a builtin set, local files, or the hub; plus the held-out split.

`load_rows` returns raw `datasets.Dataset`s (columns renamed, `limit` applied); turning rows
into a kind's canonical columns is the job of the format modules (demonstrations, prompts, ...).
"""

from __future__ import annotations

import importlib.resources
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Optional

import datasets
import numpy as np

from framework.artifacts import Artifact
from framework.data.config import DataSourceConfig
from framework.data.formats import AUTO, data_kinds, formats_of
from framework.data.jsonfile import (
    ARCHIVES, COMPRESSIONS, data_suffix, read_json_rows, rows_to_dataset)
from framework.data.report import ON_BAD_ROW, BadRows, SourceReport, log_skipped
from framework.errors import ConfigError, DataError

BUILTIN_PREFIX = "builtin:"
# file extension -> the `datasets` builder that reads it (JSON files are read by
# framework.data.jsonfile instead, line by line, so a bad line is named and can be skipped)
LOCAL_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def builtin_names() -> list[str]:
    """Names usable as `builtin:NAME`: the .jsonl files shipped in framework.data.builtin."""
    root = importlib.resources.files("framework.data.builtin")
    return sorted(p.name[: -len(".jsonl")] for p in root.iterdir() if p.name.endswith(".jsonl"))


def builtin_path(name: str) -> Path:
    return Path(str(importlib.resources.files("framework.data.builtin") / f"{name}.jsonl"))


def is_local(path: str) -> bool:
    """A local file or directory, as opposed to a hub id such as "owner/name"."""
    p = Path(path).expanduser()
    return (
        p.exists()
        or path.startswith(("/", "./", "../", "~"))
        or data_suffix(p)[0] in LOCAL_BUILDERS
    )


def source_from_artifact(artifact: Artifact, where: str) -> DataSourceConfig:
    """The DataSourceConfig a data artifact was made from (its `meta`), checked strictly."""
    from framework.plugin import parse_dataclass

    source = parse_dataclass(DataSourceConfig, dict(artifact.meta), where)
    source.path = artifact.location
    source.kind = artifact.kind
    return source


def check_source(source: DataSourceConfig, where: str) -> None:
    """Cheap checks before any weights or rows load; raises ConfigError naming `where`."""
    problems = []
    if source.kind not in data_kinds():
        problems.append(
            f"{where}.kind: {source.kind!r} is not a data kind. Use one of: "
            f"{', '.join(data_kinds())}."
        )
    elif source.format != AUTO and source.format not in formats_of(source.kind):
        problems.append(
            f"{where}.format: {source.format!r} is not a format of {source.kind} data. Use one "
            f"of: {AUTO}, {', '.join(formats_of(source.kind))}."
        )
    if not 0 <= source.eval_fraction < 1:
        problems.append(
            f"{where}.eval_fraction: {source.eval_fraction} is outside [0, 1). Use e.g. 0.1 to "
            f"hold out 10% of the rows, or 0 for none."
        )
    if source.eval_split and source.eval_fraction > 0:
        problems.append(
            f"{where}: both eval_split ({source.eval_split!r}) and eval_fraction "
            f"({source.eval_fraction}) are set; keep one of them."
        )
    if source.limit is not None and source.limit < 1:
        problems.append(f"{where}.limit: {source.limit} must be at least 1, or null for all rows.")
    if source.on_bad_row not in ON_BAD_ROW:
        problems.append(
            f"{where}.on_bad_row: {source.on_bad_row!r} is not a choice. Use `error` (stop at the "
            f"first bad row, naming it) or `skip` (leave bad rows out and report each one)."
        )
    problems += _check_path(source, where)
    if problems:
        raise ConfigError(problems)


def _check_path(source: DataSourceConfig, where: str) -> list[str]:
    path = source.path
    if path.startswith(BUILTIN_PREFIX):
        name = path[len(BUILTIN_PREFIX):]
        if name not in builtin_names():
            available = ", ".join(BUILTIN_PREFIX + n for n in builtin_names()) or "(none installed)"
            return [f"{where}.path: unknown builtin data set {name!r}. Available: {available}."]
        return _single_file_split_problems(source, where)
    if not is_local(path):
        return []  # a hub id; only loading can tell whether it exists
    p = Path(path).expanduser()
    if p.is_symlink() and not p.exists():
        return [f"{where}.path: {path!r} is a symbolic link that leads nowhere (a loop, or its "
                f"target is gone: {os.readlink(p)!r}); point path at the data itself."]
    if not p.exists():
        return [
            f"{where}.path: {path!r} does not exist (resolved to {p.resolve()}). Give an existing "
            f"file or directory, a hub id, or one of: "
            f"{', '.join(BUILTIN_PREFIX + n for n in builtin_names())}."
        ]
    if p.is_file():
        if p.suffix.lower() in ARCHIVES:
            return [f"{where}.path: {path!r} is a {p.suffix} archive, which is not read; "
                    f"extract it, or compress the file with gzip, bz2 or xz instead (read as is)."]
        if data_suffix(p)[0] not in LOCAL_BUILDERS:
            return [
                f"{where}.path: {path!r} has an unsupported extension; use one of "
                f"{', '.join(LOCAL_BUILDERS)}, optionally compressed "
                f"({', '.join(COMPRESSIONS)})."
            ]
        return _single_file_split_problems(source, where)
    try:
        _directory_builder(p, where)
        _split_files_of(p, where)
    except DataError as exc:
        return [str(exc)]
    return []


def _single_file_split_problems(source: DataSourceConfig, where: str) -> list[str]:
    """A single file holds one split, "train"; naming another would be silently ignored."""
    problems = []
    if source.split != "train":
        problems.append(
            f"{where}.split: {source.path!r} is a single file, which holds only the 'train' "
            f"split; set split: train, or point path at a directory of <split>.jsonl files."
        )
    if source.eval_split:
        problems.append(
            f"{where}.eval_split: {source.path!r} is a single file with no {source.eval_split!r} "
            f"split; use eval_fraction instead, or a directory holding {source.eval_split}.jsonl."
        )
    return problems


def _directory_builder(directory: Path, where: str) -> str:
    files = [p for p in directory.rglob("*") if p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(directory).parts)]
    archives = [str(p.relative_to(directory)) for p in files if p.suffix.lower() in ARCHIVES]
    if archives:
        raise DataError(
            f"{where}.path: the directory {str(directory)!r} holds archive(s) "
            f"{', '.join(map(repr, archives[:10]))}, which are not read; extract them or move "
            f"them out (files compressed with gzip, bz2 or xz are read as they are).")
    suffixes = {data_suffix(p)[0] for p in files}
    extensions = suffixes & set(LOCAL_BUILDERS)
    builders = {LOCAL_BUILDERS[e] for e in extensions}
    if len(builders) != 1:
        found = ", ".join(sorted(extensions)) or "no data files"
        raise DataError(
            f"{where}.path: the directory {str(directory)!r} must hold data files of one type "
            f"({', '.join(LOCAL_BUILDERS)}); found {found}."
        )
    return builders.pop()


def load_rows(
    source: DataSourceConfig,
    where: str,
    group_key: Optional[str] = None,
    report: Optional[SourceReport] = None,
) -> tuple[datasets.Dataset, Optional[datasets.Dataset]]:
    """(train rows, eval rows or None), renamed and limited.

    Eval rows come from `eval_split` if set, else `eval_fraction` of the rows chosen from `seed`
    (whole groups of equal `group_key` values when given, e.g. all pairs of one prompt).
    Lines of local JSON files that are not valid UTF-8, JSON or a JSON object are bad rows:
    an error, or with `on_bad_row: skip` left out and recorded in `report` (logged as warnings
    when no report is given).
    """
    check_source(source, where)
    own = report is None
    report = _report_for(source, where, report)
    train, _ = _read(source, source.split, where, report)
    evaluation = None
    if source.eval_split:
        evaluation, _ = _read(source, source.eval_split, where, report)
    elif source.eval_fraction > 0:
        train, evaluation = split_by_group(train, source.eval_fraction, source.seed, group_key, where)
    if own:
        log_skipped(report)
    return train, evaluation


def check_rows(source: DataSourceConfig, where: str) -> None:
    """Read and parse every row of a local or builtin source as its stages will, during
    planning: a malformed row stops the run before any weights load, not after the stages
    before its own have trained. With `on_bad_row: skip` bad rows are left for the stage to
    report; a source with no usable row is still an error now. Hub data sets load at their
    stage."""
    from framework.data.formats import parse_rows

    if not (source.path.startswith(BUILTIN_PREFIX) or is_local(source.path)):
        return
    report = _report_for(source, where, SourceReport(where))  # not logged: the stage reports

    def parse(rows, fmt, described, bad_rows):
        return parse_rows(source.kind, fmt, rows, described, bad_rows)

    for split in [source.split] + ([source.eval_split] if source.eval_split else []):
        rows, numbers = _read(source, split, where, report)
        _normalize(parse, rows, numbers, source, f"{where} ({source.path})", report, split)


def _report_for(source: DataSourceConfig, where: str, report: Optional[SourceReport]) -> SourceReport:
    report = report if report is not None else SourceReport(where)
    report.on_bad_row, report.path = source.on_bad_row, source.path
    return report


def _read(
    source: DataSourceConfig, split: str, where: str, report: SourceReport
) -> tuple[datasets.Dataset, Optional[list[int]]]:
    """One split's rows, renamed and limited, and their source row numbers when bad lines were
    left out before them (else None: row i is source row i)."""
    before = len(report.skipped)
    rows, numbers = _load_split(source, split, where, lambda error: report.bad(error, split))
    rows = _prepare(rows, source, where, skipped=len(report.skipped) - before)
    if numbers is not None:
        numbers = numbers[: len(rows)]
        if numbers == list(range(len(numbers))):
            numbers = None
    return rows, numbers


def _prepare(
    rows: datasets.Dataset, source: DataSourceConfig, where: str, skipped: int = 0
) -> datasets.Dataset:
    if len(rows) == 0:
        bad = f" (all {skipped} were bad and skipped; see the report)" if skipped else ""
        raise DataError(f"{where}: {source.path!r} has no rows{bad}.")
    missing = [old for old in source.columns if old not in rows.column_names]
    if missing:
        raise DataError(
            f"{where}.columns: cannot rename {', '.join(map(repr, missing))}: no such column in "
            f"{source.path!r}. Its columns are: {', '.join(rows.column_names)}."
        )
    clashes = [
        new for old, new in source.columns.items()
        if new in rows.column_names and new not in source.columns and new != old
    ]
    if clashes:
        raise DataError(
            f"{where}.columns: renaming onto existing column(s) {', '.join(map(repr, clashes))} "
            f"of {source.path!r}; rename or drop those first (map them to another name)."
        )
    if source.columns:
        rows = rows.rename_columns(dict(source.columns))
    if source.limit is not None:
        rows = rows.select(range(min(source.limit, len(rows))))
    return rows


def _load_split(
    source: DataSourceConfig, split: str, where: str, bad
) -> tuple[datasets.Dataset, Optional[list[int]]]:
    path = source.path
    try:
        if path.startswith(BUILTIN_PREFIX):
            return _json_files([builtin_path(path[len(BUILTIN_PREFIX):])], where, bad)
        if is_local(path):
            p = Path(path).expanduser()
            if p.is_file():
                builder = LOCAL_BUILDERS[data_suffix(p)[0]]
                if builder == "json":
                    return _json_files([p], where, bad)
                return _with_utf8_check(p, where, lambda: datasets.load_dataset(
                    builder, data_files=str(p), split="train")), None
            builder = _directory_builder(p, where)
            _split_files_of(p, where)  # no data file may be left out silently
            if builder == "json":
                return _json_files(_split_files(p, split, where, path), where, bad)
            return _pick_split(datasets.load_dataset(builder, data_dir=str(p)), split, where, path), None
        return datasets.load_dataset(path, source.subset, split=split,
                                     revision=source.revision), None
    except DataError:
        raise
    except Exception as exc:  # the library's message is kept; we add where and what
        raise DataError(
            f"{where}.path: could not load split {split!r} of {path!r}"
            f"{f' (subset {source.subset!r})' if source.subset else ''}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _json_files(files: list[Path], where: str, bad) -> tuple[datasets.Dataset, list[int]]:
    """Rows of local JSON files, one pass each; row numbers run on across the files."""
    rows: list[dict] = []
    numbers: list[int] = []
    next_row = 0
    for file in files:
        file_rows, file_numbers, next_row = read_json_rows(Path(file), where, bad, next_row)
        rows += file_rows
        numbers += file_numbers
    return rows_to_dataset(rows), numbers


# How `datasets` assigns a directory's files to splits, for the error that names a stray file.
SPLIT_NAMING = (
    "a directory's data files are assigned to splits by name: train/training, "
    "validation/valid/dev/val, test/testing/eval/evaluation as a word of the file or folder name "
    "(train.jsonl, my-test.csv, train/part1.jsonl), or <split>-00000-of-00002.parquet; when no "
    "file is named so, every file is train"
)


def _split_files_of(directory: Path, where: str) -> dict[str, list[str]]:
    """{split: files} as `datasets` reads a directory; a data file it would assign to no split
    (and so silently ignore) is a DataError naming it."""
    from datasets.data_files import FILES_TO_IGNORE, DataFilesDict, get_data_patterns

    found = DataFilesDict.from_patterns(get_data_patterns(str(directory)), base_path=str(directory))
    files = {str(name): [str(f) for f in paths] for name, paths in found.items()}
    assigned = {Path(f).resolve() for paths in files.values() for f in paths}
    stray = sorted(
        str(f.relative_to(directory)) for f in directory.rglob("*")
        if f.is_file() and data_suffix(f)[0] in LOCAL_BUILDERS and f.resolve() not in assigned
        and f.name not in FILES_TO_IGNORE  # metadata such as config.json, never data
        and not any(part.startswith(".") for part in f.relative_to(directory).parts)
    )
    if stray:
        raise DataError(
            f"{where}.path: in the directory {str(directory)!r}, {', '.join(map(repr, stray[:10]))}"
            f"{' ...' if len(stray) > 10 else ''} match(es) no split and would be silently "
            f"ignored; {SPLIT_NAMING}. The splits found are: {', '.join(files) or 'none'}. Rename "
            f"or move those files."
        )
    return files


def _split_files(directory: Path, split: str, where: str, path: str) -> list[Path]:
    """The files of `split` in a directory, named the way `datasets` names splits."""
    files = _split_files_of(directory, where)
    if split not in files:
        raise DataError(
            f"{where}: the directory {path!r} has no split {split!r}; its splits (from file "
            f"names) are: {', '.join(files)}. Set {where}.split / eval_split accordingly."
        )
    return [Path(f) for f in files[split]]


def _with_utf8_check(path: Path, where: str, load: Callable[[], datasets.Dataset]):
    """A CSV (text) file with bytes that are not UTF-8: name the line and byte, not just the
    codec's complaint. (JSON files are checked line by line as they are read.)"""
    try:
        return load()
    except Exception as exc:
        found = _first_bad_utf8(path) if data_suffix(path) == (".csv", None) else None
        if found is None:
            raise
        line, column, byte = found
        raise DataError(
            f"{where}: {path}, line {line}: not valid UTF-8: byte 0x{byte:02x} at byte {column} "
            f"of the line. Fix: save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`), or "
            f"remove that line"
        ) from exc


def _first_bad_utf8(path: Path) -> Optional[tuple[int, int, int]]:
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return lineno, exc.start, raw[exc.start]
    return None


def _pick_split(splits: datasets.DatasetDict, split: str, where: str, path: str):
    if split not in splits:
        raise DataError(
            f"{where}: the directory {path!r} has no split {split!r}; its splits (from file "
            f"names) are: {', '.join(splits)}. Set {where}.split / eval_split accordingly."
        )
    return splits[split]


def split_by_group(
    rows: datasets.Dataset,
    fraction: float,
    seed: int,
    group_key: Optional[str] = None,
    where: str = "data",
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Hold out about `fraction` of the groups (rows with equal `group_key`; each row its own
    group when None), chosen deterministically from `seed`. Rows keep their order."""
    train_idx, eval_idx = _split_indices(rows, fraction, seed, group_key, where)
    return rows.select(train_idx), rows.select(eval_idx)


def _split_indices(rows, fraction, seed, group_key, where) -> tuple[list[int], list[int]]:
    if group_key is None:
        keys = list(range(len(rows)))
    else:
        if group_key not in rows.column_names:
            raise DataError(
                f"{where}: cannot group rows by {group_key!r} for the eval split: no such column "
                f"(columns: {', '.join(rows.column_names)})."
            )
        keys = [_hashable(v) for v in rows[group_key]]
    groups = list(dict.fromkeys(keys))  # first-appearance order, so the split is reproducible
    if len(groups) < 2:
        raise DataError(
            f"{where}.eval_fraction: {len(groups)} group(s) of rows cannot be split into train "
            f"and eval; add rows or set eval_fraction: 0."
        )
    n_eval = min(max(1, math.floor(fraction * len(groups) + 0.5)), len(groups) - 1)
    order = np.random.default_rng(seed).permutation(len(groups))
    held_out = {groups[i] for i in order[:n_eval]}
    train_idx = [i for i, k in enumerate(keys) if k not in held_out]
    eval_idx = [i for i, k in enumerate(keys) if k in held_out]
    return train_idx, eval_idx


def _hashable(value: Any):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return json.dumps(value, sort_keys=True, default=str)


# normalize(rows, format, where, bad_rows) -> canonical rows; see demonstrations.py
Normalize = Callable[[datasets.Dataset, str, str, BadRows], datasets.Dataset]


def load_examples(
    source: DataSourceConfig,
    where: str,
    normalize: Normalize,
    group_key: Optional[str] = None,
    report: Optional[SourceReport] = None,
) -> tuple[datasets.Dataset, Optional[datasets.Dataset]]:
    """Like `load_rows`, but rows pass through `normalize(rows, format, where, bad_rows)` before
    the eval fraction is carved out, so row numbers in errors are the source's own and
    `group_key` can name a normalized column (e.g. "prompt", to keep a prompt's comparisons
    together).

    Bad rows raise a DataError, or with `on_bad_row: skip` are left out and recorded in
    `report` (logged as warnings when no report is given); `report.origins[split]` then gives
    the source row of each returned example, for the stage's own checks (e.g. max_length).
    """
    check_source(source, where)
    own = report is None
    report = _report_for(source, where, report)
    described = f"{where} ({source.path})"
    train_rows, numbers = _read(source, source.split, where, report)
    train, origins = _normalize(normalize, train_rows, numbers, source, described, report,
                                source.split)
    report.origins["train"] = origins
    evaluation = None
    if source.eval_split:
        eval_rows, numbers = _read(source, source.eval_split, where, report)
        described_eval = f"{described}, split {source.eval_split!r}"
        evaluation, report.origins["eval"] = _normalize(
            normalize, eval_rows, numbers, source, described_eval, report, source.eval_split
        )
    elif source.eval_fraction > 0:
        train_idx, eval_idx = _split_indices(train, source.eval_fraction, source.seed, group_key, where)
        train, evaluation = train.select(train_idx), train.select(eval_idx)
        report.origins["train"] = [origins[i] for i in train_idx]
        report.origins["eval"] = [origins[i] for i in eval_idx]
    if own:
        log_skipped(report)
    return train, evaluation


def _normalize(normalize, rows, numbers, source, where, report, split):
    bad_rows = BadRows(report, split, numbers)
    examples = normalize(rows, source.format, where, bad_rows)
    if len(examples) == 0:
        raise DataError(
            f"{where}: no usable rows: all {len(rows)} were bad and skipped "
            f"(on_bad_row: skip); see the skipped rows' reasons."
        )
    if len(bad_rows.origins) != len(examples):  # a normalizer that does not call kept()
        bad_rows.origins = list(range(len(examples)))
    return examples, bad_rows.origins
