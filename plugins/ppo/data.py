"""PPO's inputs: chat prompts in a seeded, resumable order, and pretraining text for PPO-ptx."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from framework.artifacts import Artifact
from framework.errors import DataError
from framework.reward_source import prompt_text


@dataclasses.dataclass(frozen=True)
class Prompt:
    messages: list  # chat messages [{role, content}], ending with the user turn
    text: str  # what the reward source is given as the prompt: the last user message


def to_messages(item: Any, where: str) -> list:
    """A prompt row as chat messages: a string, a message list, or a row holding one."""
    if isinstance(item, str):
        return [{"role": "user", "content": item}]
    if isinstance(item, (list, tuple)) and item and all(isinstance(m, Mapping) for m in item):
        if not all("role" in m and "content" in m for m in item):
            raise DataError(f"{where}: a message needs `role` and `content`, got {item!r:.200}.")
        return [{"role": m["role"], "content": m["content"]} for m in item]
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        item = dataclasses.asdict(item)
    if isinstance(item, Mapping):
        for key in ("messages", "prompt"):
            if key in item:
                return to_messages(item[key], where)
    raise DataError(f"{where}: cannot read a prompt from {item!r:.200}; expected a string, a "
                    f"list of chat messages, or a row with a `prompt` or `messages` column.")


def make_prompt(item: Any, where: str) -> Prompt:
    messages = to_messages(item, where)
    return Prompt(messages, prompt_text(messages))


def load_prompts(artifact: Artifact, where: str = "prompts", report=None) -> list[Prompt]:
    """The training prompts of a PROMPTS artifact (any prompt format framework.data reads).
    Held-out prompts (eval_split / eval_fraction) are left out: they are for evaluation.
    Rows skipped under on_bad_row: skip go to `report` (a SourceReport), else to the log."""
    from framework.data import load_examples, source_from_artifact, to_prompts

    train, _ = load_examples(source_from_artifact(artifact, where), where, to_prompts, report=report)
    return [make_prompt(row, f"{where} row {i}") for i, row in enumerate(train)]


def load_texts(artifact: Artifact, where: str = "pretraining", report=None) -> list[str]:
    """The documents of a TEXT artifact: rows with a `text` column. Rows skipped under
    on_bad_row: skip go to `report` (a SourceReport), else to the log."""
    from framework.data import load_examples, source_from_artifact
    from framework.data.prompts import normalize_text

    train, _ = load_examples(source_from_artifact(artifact, where), where, normalize_text,
                             report=report)
    return list(train["text"])


class SeededOrder:
    """Endless passes over `n` items, each pass in its own order drawn from (seed, epoch).

    Its position (epoch, index) is all there is to save: the order is recomputed on resume.
    """

    def __init__(self, n: int, seed: int, epoch: int = 0, index: int = 0):
        self.n, self.seed, self.epoch, self.index = n, seed, epoch, index

    def _order(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.n)

    def take(self, k: int) -> list[int]:
        """The next k item indices, moving on to a new pass when this one runs out."""
        picked, order = [], self._order()
        while len(picked) < k:
            if self.index == self.n:
                self.epoch, self.index = self.epoch + 1, 0
                order = self._order()
            picked.append(int(order[self.index]))
            self.index += 1
        return picked

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
