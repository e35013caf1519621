"""Where rows come from: a builtin set, local files, or the hub; plus the held-out split.

`load_rows` returns raw `datasets.Dataset`s (columns renamed, `limit` applied); turning rows
into a kind's canonical columns is the job of the format modules (demonstrations, prompts, ...).
"""

from __future__ import annotations

import importlib.resources
import json
import math
import dataclasses
from pathlib import Path
from typing import Any, Callable, Optional

import datasets
import numpy as np

from framework.artifacts import Artifact
from framework.data.config import DataSourceConfig
from framework.data.formats import AUTO, FORMATS
from framework.errors import ConfigError, DataError

BUILTIN_PREFIX = "builtin:"
# file extension -> the `datasets` builder that reads it
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
        or p.suffix.lower() in LOCAL_BUILDERS
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
    if source.kind not in FORMATS:
        problems.append(
            f"{where}.kind: {source.kind!r} is not a data kind. Use one of: {', '.join(FORMATS)}."
        )
    elif source.format != AUTO and source.format not in FORMATS[source.kind]:
        problems.append(
            f"{where}.format: {source.format!r} is not a format of {source.kind} data. Use one "
            f"of: {AUTO}, {', '.join(FORMATS[source.kind])}."
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
    if not p.exists():
        return [
            f"{where}.path: {path!r} does not exist (resolved to {p.resolve()}). Give an existing "
            f"file or directory, a hub id, or one of: "
            f"{', '.join(BUILTIN_PREFIX + n for n in builtin_names())}."
        ]
    if p.is_file():
        if p.suffix.lower() not in LOCAL_BUILDERS:
            return [
                f"{where}.path: {path!r} has an unsupported extension; use one of "
                f"{', '.join(LOCAL_BUILDERS)}."
            ]
        return _single_file_split_problems(source, where)
    try:
        _directory_builder(p, where)
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
    suffixes = {p.suffix.lower() for p in directory.rglob("*") if p.is_file()}
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
    source: DataSourceConfig, where: str, group_key: Optional[str] = None
) -> tuple[datasets.Dataset, Optional[datasets.Dataset]]:
    """(train rows, eval rows or None), renamed and limited.

    Eval rows come from `eval_split` if set, else `eval_fraction` of the rows chosen from `seed`
    (whole groups of equal `group_key` values when given, e.g. all pairs of one prompt).
    """
    check_source(source, where)
    train = _prepare(_load_split(source, source.split, where), source, where)
    if source.eval_split:
        evaluation = _prepare(_load_split(source, source.eval_split, where), source, where)
        return train, evaluation
    if source.eval_fraction > 0:
        return split_by_group(train, source.eval_fraction, source.seed, group_key, where)
    return train, None


def _prepare(rows: datasets.Dataset, source: DataSourceConfig, where: str) -> datasets.Dataset:
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
    if len(rows) == 0:
        raise DataError(f"{where}: {source.path!r} has no rows.")
    return rows


def _load_split(source: DataSourceConfig, split: str, where: str) -> datasets.Dataset:
    path = source.path
    try:
        if path.startswith(BUILTIN_PREFIX):
            file = builtin_path(path[len(BUILTIN_PREFIX):])
            return datasets.load_dataset("json", data_files=str(file), split="train")
        if is_local(path):
            p = Path(path).expanduser()
            if p.is_file():
                builder = LOCAL_BUILDERS[p.suffix.lower()]
                return datasets.load_dataset(builder, data_files=str(p), split="train")
            builder = _directory_builder(p, where)
            return _pick_split(datasets.load_dataset(builder, data_dir=str(p)), split, where, path)
        return datasets.load_dataset(path, source.subset, split=split)
    except DataError:
        raise
    except Exception as exc:  # the library's message is kept; we add where and what
        raise DataError(
            f"{where}.path: could not load split {split!r} of {path!r}"
            f"{f' (subset {source.subset!r})' if source.subset else ''}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


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
    return rows.select(train_idx), rows.select(eval_idx)


def _hashable(value: Any):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return json.dumps(value, sort_keys=True, default=str)


def load_examples(
    source: DataSourceConfig,
    where: str,
    normalize: Callable[[datasets.Dataset, str, str], datasets.Dataset],
    group_key: Optional[str] = None,
) -> tuple[datasets.Dataset, Optional[datasets.Dataset]]:
    """Like `load_rows`, but rows pass through `normalize(rows, format, where)` before the
    eval fraction is carved out, so row numbers in errors are the source's own and `group_key`
    can name a normalized column (e.g. "prompt", to keep a prompt's comparisons together)."""
    whole = dataclasses.replace(source, eval_fraction=0.0)
    train, evaluation = load_rows(whole, where)
    described = f"{where} ({source.path})"
    train = normalize(train, source.format, described)
    if evaluation is not None:
        described_eval = f"{described}, split {source.eval_split!r}"
        evaluation = normalize(evaluation, source.format, described_eval)
    elif source.eval_fraction > 0:
        train, evaluation = split_by_group(
            train, source.eval_fraction, source.seed, group_key, where
        )
    return train, evaluation
