"""Bad rows: the one shape of their error, and what a loader does with them.

A source's `on_bad_row` decides: `error` (the default) raises the first bad row's
`BadRowError`, naming the file, the row or line, the field and the fix; `skip` leaves bad rows
out and records each one, with its reason, in the source's `SourceReport`. Stages put the counts
in their metrics (so in summary.json) and the records in `<stage dir>/skipped_rows.jsonl`:
nothing is dropped silently.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

from framework.errors import DataError

ON_BAD_ROW = ("error", "skip")
SKIPPED_ROWS_FILE = "skipped_rows.jsonl"

log = logging.getLogger("framework")


class BadRowError(DataError):
    """One bad row (or line) of a data source: where, which row or line, which field, what is
    wrong, and the fix. `record()` is its entry in a skipped-rows report."""

    def __init__(
        self,
        where: str,
        problem: str,
        fix: str,
        *,
        row: Optional[int] = None,
        field: Optional[str] = None,
        line: Optional[int] = None,
        file: Optional[str] = None,
    ):
        self.where, self.problem, self.fix = where, problem, fix
        self.row, self.field, self.line, self.file = row, field, line, file
        if line is not None:
            at = f"{file}, line {line}" if file else f"line {line}"
            if row is not None:
                at += f" (row {row}, 0-based)"
        else:
            at = f"{file}, row {row} (0-based)" if file else f"row {row} (0-based)"
        if field is not None:
            at += f", field {field!r}"
        super().__init__(f"{where}: {at}: {problem}. Fix: {fix}")

    def record(self) -> dict:
        out: dict[str, Any] = {}
        if self.file is not None:
            out["file"] = self.file
        if self.line is not None:
            out["line"] = self.line
        if self.row is not None:
            out["row"] = self.row
        out["field"] = self.field
        out["reason"] = self.problem
        return out


@dataclass
class SourceReport:
    """One data source's account: the rows left out (on_bad_row: skip), and for each example a
    loader kept, the source row it came from (`origins[split]`, in example order)."""

    name: str
    on_bad_row: str = "error"
    path: str = ""
    skipped: list[dict] = field(default_factory=list)
    origins: dict[str, list[int]] = field(default_factory=dict)

    def bad(self, error: BadRowError, split: str = "train") -> None:
        """Raise `error` (on_bad_row: error), or record it so the caller can go on (skip)."""
        if self.on_bad_row != "skip":
            raise error
        self.skip(error.record(), split)

    def skip(self, record: dict, split: str = "train") -> None:
        """Record a row left out, e.g. by a stage's length check: {row|line, field, reason}."""
        self.skipped.append({"source": self.name, "path": self.path, "split": split, **record})


class DataReport:
    """The sources a stage read, by name (e.g. its input port): what each left out and why."""

    def __init__(self) -> None:
        self.sources: dict[str, SourceReport] = {}

    def source(self, name: str) -> SourceReport:
        return self.sources.setdefault(name, SourceReport(name))

    @property
    def skipped(self) -> list[dict]:
        return [record for source in self.sources.values() for record in source.skipped]

    def counts(self) -> dict[str, int]:
        """{source name: rows skipped}; zero counts included, so a clean run says so too."""
        return {name: len(source.skipped) for name, source in self.sources.items()}

    def write(self, directory: Path) -> Path:
        """Every skipped row, one JSON object a line, in `directory`/skipped_rows.jsonl."""
        from framework.common.files import write_text_atomic

        path = Path(directory) / SKIPPED_ROWS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, "".join(json.dumps(r, default=str) + "\n" for r in self.skipped))
        return path


class BadRows:
    """What a normalizer does with the rows of one split: number them as the source does
    (`numbers[i]` is the source row of dataset row i when earlier lines were left out), hand
    bad ones to the report (raise or record), and note each kept example's source row."""

    def __init__(
        self,
        report: Optional[SourceReport] = None,
        split: str = "train",
        numbers: Optional[Sequence[int]] = None,
    ):
        self.report = report
        self.split = split
        self.numbers = numbers
        self.origins: list[int] = []

    def bad(self, error: BadRowError) -> None:
        if self.report is None:
            raise error
        self.report.bad(error, self.split)

    def parsed(self, rows: Iterable[dict], parse: Callable[[dict, int], Any]) -> Iterator[tuple[int, Any]]:
        """(source row number, parse(row, number)) for each good row; bad ones go to `bad`."""
        for i, row in enumerate(rows):
            number = self.numbers[i] if self.numbers is not None else i
            try:
                result = parse(row, number)
            except BadRowError as error:
                self.bad(error)
                continue
            yield number, result

    def kept(self, number: int) -> None:
        self.origins.append(number)


def log_skipped(report: SourceReport) -> None:
    """For callers that asked for no report: skipped rows still go somewhere visible."""
    for record in report.skipped:
        log.warning("%s: skipped bad row: %s", report.name, record)
