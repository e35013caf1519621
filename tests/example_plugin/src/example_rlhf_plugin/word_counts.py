"""A stage that produces this package's own artifact kind, `word_counts`: how often each word
occurs in the responses of a demonstration set."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

from framework.artifacts import DEMONSTRATIONS, Artifact, Port
from framework.data import load_examples, source_from_artifact, to_prompt_completion
from framework.errors import ConfigError
from framework.stage import Stage, StageResult

from example_rlhf_plugin.kinds import WORD_COUNTS


class WordCountsStage(Stage):
    inputs = {"data": Port((DEMONSTRATIONS,))}
    outputs = {"counts": WORD_COUNTS.name}

    @dataclass
    class Config:
        top: int = 10  # how many of the most frequent words the metrics name

    def check(self, inputs, where):
        if self.config.top < 1:
            raise ConfigError(f"{where}.params.top: must be >= 1, got {self.config.top}.")

    def run(self, inputs, ctx):
        where = f"stages.{ctx.name}.inputs.data"
        train, _ = load_examples(source_from_artifact(inputs["data"], where), where,
                                 to_prompt_completion)
        counts = Counter(word for completion in train["completion"]
                         for word in completion[-1]["content"].lower().split())
        ctx.output_dir.mkdir(parents=True, exist_ok=True)
        path = ctx.output_dir / "word_counts.json"
        path.write_text(json.dumps(dict(counts.most_common()), indent=1), encoding="utf-8")
        metrics = {"words": sum(counts.values()), "distinct": len(counts),
                   "top": [word for word, _ in counts.most_common(self.config.top)]}
        return StageResult(metrics, {"counts": Artifact(WORD_COUNTS.name, str(path))})
