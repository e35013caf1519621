"""The RewardSource interface: scores (prompt, response) pairs for RL and evaluation."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Mapping, Sequence, Union

from framework.artifacts import Artifact, Port
from framework.plugin import Plugin


# A prompt is a chat conversation ending with the user's turn: [{"role": ..., "content": ...}].
# A plain string stands for a single user turn.
Prompt = Union[str, Sequence[Mapping[str, str]]]


def prompt_messages(prompt: Prompt) -> list[dict]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def prompt_text(prompt: Prompt) -> str:
    """The last user message: what simple scoring functions look at."""
    if isinstance(prompt, str):
        return prompt
    users = [m["content"] for m in prompt if m["role"] == "user"]
    return users[-1] if users else prompt[-1]["content"]


class RewardSource(Plugin, ABC):
    """Turns responses into scalar rewards: a reward model, a function, a judge, a server...

    `inputs` declares the artifacts it needs (e.g. a reward-model checkpoint); the stage that
    uses the source wires them. `setup()` loads what is needed; `score()` returns one float per
    (prompt, response), higher is better.
    """

    inputs: ClassVar[Mapping[str, Port]] = {}

    def check(self, where: str) -> None:
        """Cheap validation before any weights load (e.g. that a named function imports)."""

    def setup(self, inputs: Mapping[str, Artifact], device=None, model_cfg=None) -> None:
        """Load models or open connections. Called once before scoring. `model_cfg` is the run's
        `model` config node (loading options such as dtype and trust_remote_code)."""

    @property
    def needs_calibration(self) -> bool:
        """Whether `calibrate()` must see samples of the starting policy before scoring."""
        return False

    @property
    def calibration_size(self) -> int:
        """How many starting-policy samples `calibrate()` wants."""
        return 0

    def calibrate(self, prompts: Sequence["Prompt"], responses: Sequence[str]) -> dict:
        """Fit normalization statistics on samples of the starting policy; returns them."""
        return {}

    @abstractmethod
    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        """One reward per (prompt, response) pair. Prompts are chat conversations (see
        `Prompt`), so a reward model sees the whole dialogue the response answers."""

    def metrics(self) -> dict[str, float]:
        """Numbers about the last `score()` call worth logging with the step (an ensemble's
        member means, a server's retries); the PPO loop logs them as `reward/NAME`."""
        return {}

    def compare(self, prompts: Sequence[Prompt], first: Sequence[str],
                second: Sequence[str]) -> list[float]:
        """A pairwise verdict per prompt: 1.0 where `first` is preferred, 0.0 where `second` is,
        0.5 for a tie (scores within 1e-9). By default the scores decide; a judge that compares
        two responses directly (an LLM judge asked in both orders) overrides this."""
        a, b = self.score(prompts, first), self.score(prompts, second)
        return [0.5 if abs(x - y) <= 1e-9 else float(x > y) for x, y in zip(a, b)]
