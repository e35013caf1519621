"""How well a scorer agrees with held-out human comparisons: pairwise accuracy, and whether its
score margins are calibrated probabilities.

A reward model trained with the Bradley-Terry loss (InstructGPT eq. 1) claims
P(a preferred to b) = sigmoid(r(a) - r(b)). Each held-out pair is read in both orders, (chosen,
rejected) observed 1 at p and (rejected, chosen) observed 0 at 1 - p, so the table covers [0, 1]
symmetrically; per bin of predicted probability it gives the mean prediction and the share
observed preferred. A calibrated model's two columns agree; the expected calibration error (ECE)
is their count-weighted mean absolute gap. Margins must be raw scores (a reward source that
normalizes its scores rescales them)."""

from __future__ import annotations

import math
from typing import Sequence


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def pairwise_agreement(chosen: Sequence[float], rejected: Sequence[float], *,
                       bins: int = 10) -> dict:
    """Accuracy (a tie counts half), the mean margin, the calibration table and its ECE for
    the scores of each held-out pair's chosen and rejected response."""
    if len(chosen) != len(rejected) or not chosen:
        raise ValueError(f"need one chosen and one rejected score per pair, got {len(chosen)} "
                         f"and {len(rejected)}")
    margins = [c - r for c, r in zip(chosen, rejected)]
    accuracy = sum(0.5 if m == 0 else float(m > 0) for m in margins) / len(margins)
    readings = [(sigmoid(m), 1.0) for m in margins] + [(sigmoid(-m), 0.0) for m in margins]
    table = []
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        # the top bin is closed, so p = 1.0 (a huge margin) is counted
        inside = [(p, o) for p, o in readings if low <= p < high or (b == bins - 1 and p == 1.0)]
        if inside:
            table.append({"low": low, "high": high, "count": len(inside),
                          "predicted": sum(p for p, _ in inside) / len(inside),
                          "observed": sum(o for _, o in inside) / len(inside)})
    ece = sum(row["count"] * abs(row["predicted"] - row["observed"]) for row in table) / len(
        readings)
    return {"pairs": len(margins), "accuracy": accuracy,
            "mean_margin": sum(margins) / len(margins), "ece": ece, "calibration": table}
