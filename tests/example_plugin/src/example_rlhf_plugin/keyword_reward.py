"""A reward source that counts a keyword in each response."""

from __future__ import annotations

from dataclasses import dataclass

from framework.reward_source import RewardSource


class KeywordReward(RewardSource):
    @dataclass
    class Config:
        keyword: str = "please"
        weight: float = 1.0

    def score(self, prompts, responses):
        key = self.config.keyword.lower()
        return [self.config.weight * r.lower().count(key) for r in responses]
