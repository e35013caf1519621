"""A RewardSource as a TRL reward function: TRL calls it with the batch's prompts and
completions (conversational: message lists) and reads one float per completion."""

from __future__ import annotations

from typing import Sequence

from framework.reward_source import RewardSource


class TRLRewardFunction:
    """`reward_funcs` entry for trl.GRPOTrainer / trl.RLOOTrainer. The source sees the whole
    prompt conversation and the response text, exactly as the RL stage's scorers and PPO give
    them, so a reward model scores the formatting it was trained on."""

    def __init__(self, source: RewardSource, name: str = "reward"):
        self.source = source
        self.__name__ = name  # TRL logs each reward function's mean under its name

    def __call__(self, prompts: Sequence, completions: Sequence, **_) -> list[float]:
        responses = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        scores = [float(s) for s in self.source.score(list(prompts), responses)]
        if len(scores) != len(responses):
            raise ValueError(f"reward source {type(self.source).__name__} returned "
                             f"{len(scores)} scores for {len(responses)} responses")
        return scores
