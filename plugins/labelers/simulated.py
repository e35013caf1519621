"""The `simulated` labeler: the built-in labeler function (framework/data/builtin/labeler.py)
ranks each task's responses by its score, as the built-in comparisons were ranked, and rates
each on 1-7 by its score's place on the function's [-1, 2.5] range. Deterministic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from framework.labeling.labeler import Labeler
from framework.labeling.tasks import Label, Task
from framework.reward_source import prompt_text

LOW, HIGH = -1.0, 2.5  # the labeler function's range


@dataclass
class SimulatedConfig:
    labeler_id: str = "simulated"


class SimulatedLabeler(Labeler):
    Config = SimulatedConfig

    def label(self, tasks: Sequence[Task]) -> list[Label]:
        from framework.data.builtin import labeler

        labels = []
        for task in tasks:
            prompt = prompt_text(task.prompt)
            ranks = labeler.rank(prompt, task.responses)  # exact ties broken, as in the data
            scores = [labeler.score(prompt, r) for r in task.responses]
            likert = [max(1, min(7, round(1 + 6 * (s - LOW) / (HIGH - LOW)))) for s in scores]
            labels.append(Label(task.task_id, self.config.labeler_id, ranks=ranks, scores=likert))
        return labels
