"""Win rate of a policy against a baseline, as InstructGPT reports its policies against SFT.

Each of the policy's samples meets the baseline's sample of the same prompt and index; a judge
gives 1 (the policy's is preferred), 0.5 (a tie) or 0. The win rate is the mean, ties counted
half. Its confidence interval is a percentile bootstrap over prompts (a prompt's matches are
resampled together, since they share the prompt)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np


@dataclass
class WinRate:
    win_rate: float
    wins: int
    ties: int
    losses: int
    ci_low: float
    ci_high: float
    confidence: float

    def to_json(self) -> dict:
        return asdict(self)


def win_rate(outcomes: Sequence[Sequence[float]], *, resamples: int = 1000,
             confidence: float = 0.95, seed: int = 0) -> WinRate:
    """`outcomes[p]`: the judge's verdicts (1, 0.5, 0) on prompt p's matches; every prompt has
    at least one."""
    per_prompt = np.array([[float(o) for o in row] for row in outcomes])  # [prompts, matches]
    flat = per_prompt.ravel()
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(per_prompt), size=(resamples, len(per_prompt)))
    means = per_prompt[picks].mean(axis=(1, 2))
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return WinRate(win_rate=float(flat.mean()), wins=int((flat == 1).sum()),
                   ties=int((flat == 0.5).sum()), losses=int((flat == 0).sum()),
                   ci_low=float(low), ci_high=float(high), confidence=confidence)
