"""The `scorer` labeler: any reward source ranks each task's responses by its scores (higher is
better; equal scores tie). With the judge source this is RLAIF: an LLM ranks the samples.

    labeler:
      name: scorer
      params:
        source: {name: judge, params: {backend: openai, base_url: ..., model: ...}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from framework import plugins
from framework.labeling.labeler import Labeler
from framework.labeling.tasks import Label, Task
from framework.plugin_spec import PluginSpec, parse_spec


@dataclass
class ScorerConfig:
    source: PluginSpec = field(default_factory=PluginSpec)
    labeler_id: str = ""  # default: "scorer:" + the source's name
    tie_tolerance: float = 1e-9  # scores this close rank equal


class ScorerLabeler(Labeler):
    Config = ScorerConfig

    @classmethod
    def parse_config(cls, node: Any, where: str) -> ScorerConfig:
        config = super().parse_config(node, where)
        config.source = parse_spec(plugins.reward_sources, config.source, f"{where}.source")
        return config

    def nested(self):
        return {"source": self.config.source}

    def check(self, where: str) -> None:
        self.config.source.instance.check(f"{where}.source.params")

    def setup(self, inputs, device=None, model_cfg=None, session=None) -> None:
        source = self.config.source
        source.instance.setup(source.artifacts, device=device, model_cfg=model_cfg)

    def label(self, tasks: Sequence[Task]) -> list[Label]:
        source = self.config.source
        labeler_id = self.config.labeler_id or f"scorer:{source.name}"
        prompts = [t.prompt for t in tasks for _ in t.responses]
        scores = source.instance.score(prompts, [r for t in tasks for r in t.responses])
        labels, start = [], 0
        for task in tasks:
            mine = scores[start:start + len(task.responses)]
            start += len(task.responses)
            # rank = 1 + the number of responses scored clearly higher (ties share a rank)
            ranks = [1 + sum(o > s + self.config.tie_tolerance for o in mine) for s in mine]
            labels.append(Label(task.task_id, labeler_id, ranks=ranks))
        return labels
