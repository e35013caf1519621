"""The RewardSource interface: scores (prompt, response) pairs for RL and evaluation."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Mapping, Sequence

from framework.artifacts import Artifact, Port
from framework.plugin import Plugin


class RewardSource(Plugin, ABC):
    """Turns responses into scalar rewards: a reward model, a function, a judge, a server...

    `inputs` declares the artifacts it needs (e.g. a reward-model checkpoint); the stage that
    uses the source wires them. `setup()` loads what is needed; `score()` returns one float per
    (prompt, response), higher is better.
    """

    inputs: ClassVar[Mapping[str, Port]] = {}

    def setup(self, inputs: Mapping[str, Artifact], device=None) -> None:
        """Load models or open connections. Called once before scoring."""

    @abstractmethod
    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """One reward per (prompt, response) pair."""
