"""A stage that filters a demonstration set by response length and hands the result on."""

from __future__ import annotations

import json
from dataclasses import dataclass

from framework.artifacts import DEMONSTRATIONS, Port
from framework.data import DataSourceConfig, load_rows, source_from_artifact, to_prompt_completion
from framework.data.config import data_artifact
from framework.errors import ConfigError
from framework.stage import Stage, StageResult


class LengthFilterStage(Stage):
    inputs = {"data": Port((DEMONSTRATIONS,))}
    outputs = {"data": DEMONSTRATIONS}

    @dataclass
    class Config:
        max_words: int = 100

    def check(self, inputs, where):
        if self.config.max_words < 1:
            raise ConfigError(f"{where}.params.max_words: must be >= 1, got {self.config.max_words}.")

    def run(self, inputs, ctx):
        where = f"stages.{ctx.name}.inputs.data"
        source = source_from_artifact(inputs["data"], where)
        train, _ = load_rows(source, where)
        rows = to_prompt_completion(train, source.format, source.path)
        kept = [r for r in rows if len(r["completion"][-1]["content"].split()) <= self.config.max_words]
        path = ctx.output_dir / "demonstrations.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        out = DataSourceConfig(kind=DEMONSTRATIONS, path=str(path), format="prompt_completion",
                               eval_fraction=source.eval_fraction, seed=source.seed)
        metrics = {"rows_in": len(rows), "rows_kept": len(kept), "rows_dropped": len(rows) - len(kept)}
        return StageResult(metrics, {"data": data_artifact(out)})
