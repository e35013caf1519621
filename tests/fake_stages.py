"""Cheap stages for testing the planner and the runner without any model."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import List

from framework.artifacts import DEMONSTRATIONS, MODEL, PROMPTS, REWARD_MODEL, Artifact, Port
from framework.errors import ConfigError
from framework.stage import Stage, StageResult

CALLS: List[str] = []  # stage names in the order they ran


class MakeModel(Stage):
    """Writes a 'model' file whose content records what it was trained from."""

    inputs = {"model": Port((MODEL,)), "data": Port((DEMONSTRATIONS,), required=False)}
    outputs = {"model": MODEL}

    @dataclass
    class Config:
        steps: int = 1
        fail: bool = False
        tags: List[str] = field(default_factory=list)

    def check(self, inputs, where):
        if self.config.steps < 1:
            raise ConfigError(f"{where}.params.steps: must be >= 1, got {self.config.steps}.")

    def run(self, inputs, ctx):
        CALLS.append(ctx.name)
        if self.config.fail:
            raise RuntimeError("boom")
        path = ctx.output_dir / "model.json"
        path.write_text(json.dumps({"from": inputs["model"].location, "steps": self.config.steps}))
        return StageResult({"steps": self.config.steps}, {"model": Artifact(MODEL, str(path))})


class MakeRewardModel(Stage):
    inputs = {"model": Port((MODEL, REWARD_MODEL))}
    outputs = {"model": REWARD_MODEL}

    def run(self, inputs, ctx):
        CALLS.append(ctx.name)
        path = ctx.output_dir / "rm.json"
        path.write_text(json.dumps({"from": inputs["model"].location}))
        return StageResult({"accuracy": 1.0}, {"model": Artifact(REWARD_MODEL, str(path))})


class UsePrompts(Stage):
    inputs = {"policy": Port((MODEL,)), "prompts": Port((PROMPTS,))}
    outputs = {}

    def run(self, inputs, ctx):
        CALLS.append(ctx.name)
        return StageResult({}, {})


class LiesAboutOutputs(Stage):
    inputs = {"model": Port((MODEL,))}
    outputs = {"model": MODEL}

    def run(self, inputs, ctx):
        return StageResult({}, {})


FAKES = {"make_model": MakeModel, "make_rm": MakeRewardModel, "use_prompts": UsePrompts,
         "liar": LiesAboutOutputs}
