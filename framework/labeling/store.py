"""Where the labeling app keeps tasks, accounts, assignments and labels.

`LabelStore` is the interface the app, the human labeler and the CLI use; `SQLiteStore`
(framework/labeling/sqlite_store.py) implements it on one SQLite file in the stage's folder.
Another SQL database can sit behind the same methods. Every write is one transaction: a label
is either stored whole or not at all, and a stored label survives a kill -9 of the server."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from framework.errors import FrameworkError
from framework.labeling.tasks import Label, Task

STORE_FILE = "labels.sqlite"
LABELER, ADMIN = "labeler", "admin"


class StoreError(FrameworkError):
    """A request the store refuses: it names what is wrong, for the page or the CLI to show."""


class AlreadyLabeled(StoreError):
    pass


@dataclass(frozen=True)
class Account:
    name: str
    role: str  # LABELER or ADMIN


@dataclass(frozen=True)
class LabelRecord:
    label: Label
    submitted_at: float  # unix seconds
    seconds: Optional[float]  # from the task's assignment to the submission


@dataclass(frozen=True)
class Progress:
    tasks: int
    wanted_labels: int  # each task's `wanted` summed
    labels: int  # submitted, skips included
    complete_tasks: int  # tasks with all their wanted labels
    labeled_tasks: int  # tasks with at least one label that is not a skip


class LabelStore(ABC):
    @abstractmethod
    def publish(self, tasks: Sequence[Task], wanted: dict[str, int], settings: dict) -> None:
        """Add the tasks (each wanted from `wanted[task_id]` labelers) and the app's settings.
        Publishing the same tasks again changes nothing; a task id that already holds other
        content is refused."""

    @abstractmethod
    def update_settings(self, settings: dict) -> None:
        """Set these settings, keeping the others."""

    @abstractmethod
    def settings(self) -> dict:
        """What publish() stored: allow_ties, instructions, the stage's name."""

    @abstractmethod
    def tasks(self) -> list[Task]:
        """In publication order."""

    @abstractmethod
    def task(self, task_id: str) -> Optional[Task]: ...

    @abstractmethod
    def add_account(self, name: str, role: str, replace: bool = False) -> str:
        """A new account and its token, returned once (only its hash is stored). With
        `replace`, an existing account gets a new token and its old one stops working."""

    @abstractmethod
    def accounts(self) -> list[Account]: ...

    @abstractmethod
    def account_for_token(self, token: str) -> Optional[Account]: ...

    @abstractmethod
    def next_task(self, labeler: str) -> Optional[str]:
        """The labeler's open assignment, else a new one: the first task that still wants a
        labeler and is not theirs yet. An open assignment older than the `lease_seconds`
        setting no longer counts as a place taken (its labeler may still submit). None when
        nothing is left for them."""

    @abstractmethod
    def is_assigned(self, task_id: str, labeler: str) -> bool: ...

    @abstractmethod
    def assigned(self, labeler: str) -> list[str]:
        """The labeler's tasks in the order they were assigned."""

    @abstractmethod
    def release(self, labeler: str) -> list[str]:
        """Take back the labeler's open (unsubmitted) tasks, so others get them; returns them."""

    @abstractmethod
    def submit(self, label: Label) -> None:
        """Store a checked label of an assigned task; AlreadyLabeled if this labeler labeled
        it before."""

    @abstractmethod
    def label(self, task_id: str, labeler: str) -> Optional[Label]:
        """The labeler's label of the task, if submitted."""

    @abstractmethod
    def records(self) -> list[LabelRecord]:
        """Every stored label, in submission order."""

    @abstractmethod
    def progress(self) -> Progress: ...

    def labels(self) -> list[Label]:
        return [r.label for r in self.records()]


def open_store(path: Path) -> LabelStore:
    from framework.labeling.sqlite_store import SQLiteStore

    return SQLiteStore(Path(path))
