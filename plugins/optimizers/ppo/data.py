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


def check_prompt_lengths(prompts: list[Prompt], tokenizer, max_prompt_length: int,
                         artifact: Artifact, origins_report=None, report=None,
                         where: str = "prompts") -> list[Prompt]:
    """Prompts longer than max_prompt_length tokens (chat template included) would lose their
    beginning at every rollout. An error naming them, or with the source's on_bad_row: skip left
    out and reported in `report` (the stage's DataReport) under "prompts"."""
    from framework.data import source_from_artifact

    source = source_from_artifact(artifact, where)
    origins = (origins_report.origins.get("train") if origins_report is not None else None) \
        or list(range(len(prompts)))
    lengths = [len(tokenizer(tokenizer.apply_chat_template(p.messages, tokenize=False,
                                                            add_generation_prompt=True),
                             add_special_tokens=False)["input_ids"]) for p in prompts]
    long = [i for i, n in enumerate(lengths) if n > max_prompt_length]
    if not long:
        return prompts
    if source.on_bad_row != "skip":
        raise DataError(
            f"{where}: {len(long)} of {len(prompts)} training prompts of {source.path!r} are longer "
            f"than optimizer.params.max_prompt_length={max_prompt_length} tokens (chat template "
            f"included: {[lengths[i] for i in long[:20]]}), so rollouts would see them cut (source "
            f"rows, 0-based: {[origins[i] for i in long[:20]]}). Raise max_prompt_length, shorten "
            f"those prompts, or set the source's on_bad_row: skip to leave them out and report "
            f"them.")
    sink = report.source("prompts") if report is not None else None
    for i in long:
        record = {"row": origins[i], "field": "prompt", "reason": (
            f"the prompt is {lengths[i]} tokens (chat template included), more than "
            f"max_prompt_length={max_prompt_length}: rollouts would see it cut")}
        if sink is not None:
            sink.skip(record, "train")
        else:
            import logging

            logging.getLogger("framework").warning("%s: skipped bad row: %s", where, record)
    dropped = set(long)
    kept = [p for i, p in enumerate(prompts) if i not in dropped]
    if not kept:
        raise DataError(f"{where}: every training prompt is longer than max_prompt_length="
                        f"{max_prompt_length} tokens; raise optimizer.params.max_prompt_length.")
    return kept


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
