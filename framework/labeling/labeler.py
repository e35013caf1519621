"""The Labeler interface: who turns tasks into labels (a person through the labeling app, the
simulated labeler, an LLM judge, ...). Labelers are plugins, registered like stages."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Mapping, Optional, Sequence

from framework.artifacts import Artifact, Port
from framework.labeling.tasks import Label, Task
from framework.plugin import Plugin


@dataclass
class LabelSession:
    """Where a label stage runs: a labeler that keeps state (the labeling app's store) keeps it
    in `output_dir`, which survives the stage's re-runs."""

    stage: str
    output_dir: Path
    run_dir: Path
    allow_ties: bool = True


class Labeler(Plugin, ABC):
    """`inputs` declares artifacts it needs (a judge model); the label stage wires them.
    `label()` returns the labels available now, at most one per task and labeler id: an
    automatic labeler labels every task at once, a human one returns what was submitted so far."""

    inputs: ClassVar[Mapping[str, Port]] = {}

    def check(self, where: str) -> None:
        """Cheap validation before any weights load."""

    def setup(self, inputs: Mapping[str, Artifact], device=None, model_cfg=None,
              session: Optional[LabelSession] = None) -> None:
        """Load models or open connections before labeling."""

    @abstractmethod
    def label(self, tasks: Sequence[Task]) -> list[Label]:
        """Labels of `tasks`."""
