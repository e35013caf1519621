"""The schema of one data source in the `data` config group."""

from dataclasses import dataclass, field
from typing import Dict, Optional


@dataclass
class DataSourceConfig:
    # demonstrations | comparisons | prompts | text  (see framework.artifacts)
    kind: str = "demonstrations"
    # "builtin:NAME" (shipped with the framework), a hub id, or a local file or directory
    # (.json, .jsonl, .parquet, .csv).
    path: str = "builtin:demonstrations"
    subset: Optional[str] = None  # hub data set config name
    # A hub data set's branch, tag or commit (null: main). Reuse compares the commit it names.
    revision: Optional[str] = None
    split: str = "train"
    # Held-out data: a named split, or else this fraction of the rows (whole prompt groups for
    # comparisons), chosen deterministically from `seed`.
    eval_split: Optional[str] = None
    eval_fraction: float = 0.0
    seed: int = 0
    # auto | messages | prompt_completion | alpaca | pairs | ranking | hh | text | prompt
    format: str = "auto"
    # Rename columns before parsing, e.g. {question: prompt, response_j: chosen}.
    columns: Dict[str, str] = field(default_factory=dict)
    limit: Optional[int] = None  # keep only the first N rows (after renaming)
    # What a bad row (missing or mistyped field, empty text, invalid JSON or UTF-8, too long
    # for the stage's max_length, ...) does: `error` stops with its file, row, field and fix;
    # `skip` leaves it out and reports it (the stage's `skipped_rows` metric and
    # <stage dir>/skipped_rows.jsonl).
    on_bad_row: str = "error"


def data_artifact(source: DataSourceConfig):
    """The artifact for a data source: its settings travel in `meta`."""
    import dataclasses

    from framework.artifacts import Artifact

    return Artifact(source.kind, source.path, dataclasses.asdict(source))

