"""The `judge` labeler (RLAIF): a judge compares every two responses of a task, and each
response is ranked by its wins (a tie is half a win; equal wins share a rank, a Copeland
ranking). With the `judge` reward source each comparison is asked in both orders and counts
only where both agree, so the judge's position bias cancels; any other reward source compares
by its scores.

    labeler:
      name: judge
      params:
        source: {name: judge, params: {backend: openai, base_url: ..., model: ...}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Sequence

from framework.labeling.tasks import Label, Task
from framework.plugin_spec import PluginSpec
from framework_plugins.labelers.scorer import ScorerLabeler


@dataclass
class JudgeLabelerConfig:
    source: PluginSpec = field(default_factory=lambda: PluginSpec(name="judge"))
    labeler_id: str = ""  # default: "judge:" + the source's name


class JudgeLabeler(ScorerLabeler):
    Config = JudgeLabelerConfig

    def label(self, tasks: Sequence[Task]) -> list[Label]:
        source = self.config.source
        pairs = [(t, a, b) for t in tasks for a, b in combinations(range(len(t.responses)), 2)]
        verdicts = source.instance.compare([t.prompt for t, _, _ in pairs],
                                           [t.responses[a] for t, a, _ in pairs],
                                           [t.responses[b] for t, _, b in pairs])
        wins = {t.task_id: [0.0] * len(t.responses) for t in tasks}
        for (task, a, b), first in zip(pairs, verdicts):
            wins[task.task_id][a] += first
            wins[task.task_id][b] += 1.0 - first
        labeler_id = self.config.labeler_id or f"judge:{source.name}"
        return [Label(t.task_id, labeler_id,
                      ranks=[1 + sum(o > w for o in wins[t.task_id]) for w in wins[t.task_id]])
                for t in tasks]
