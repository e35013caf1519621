"""Inter-labeler agreement, as InstructGPT reports it (72.6 +- 1.5% among its trained
labelers): on tasks two labelers both ranked, the share of response pairs both ordered the same
way. Each (two labelers, one task, one response pair) is one comparison; its outcome for a
labeler is "a better", "b better" or "tie", and the two agree when the outcomes are equal.
Skipped labels take no part."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from itertools import combinations
from typing import Sequence

from framework.labeling.tasks import Label


@dataclass(frozen=True)
class Agreement:
    agreed: int
    compared: int

    @property
    def rate(self) -> float | None:
        return self.agreed / self.compared if self.compared else None


def _outcome(ranks: list[int], a: int, b: int) -> int:
    return (ranks[a] > ranks[b]) - (ranks[a] < ranks[b])  # -1: a better, 0: tie, 1: b better


def pairwise_agreement(labels: Sequence[Label]) -> tuple[Agreement, dict[tuple[str, str], Agreement]]:
    """Overall, and for each pair of labelers (names sorted) that shared a task."""
    by_task = defaultdict(list)
    for label in labels:
        if not label.skipped and label.ranks:
            by_task[label.task_id].append(label)
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for votes in by_task.values():
        for first, second in combinations(sorted(votes, key=lambda v: v.labeler), 2):
            count = counts[(first.labeler, second.labeler)]
            for a, b in combinations(range(len(first.ranks)), 2):
                count[0] += _outcome(first.ranks, a, b) == _outcome(second.ranks, a, b)
                count[1] += 1
    pairs = {key: Agreement(*value) for key, value in sorted(counts.items())}
    return (Agreement(sum(a.agreed for a in pairs.values()),
                      sum(a.compared for a in pairs.values())), pairs)
