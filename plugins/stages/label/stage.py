"""The label stage: a labeler (a plugin: `simulated`, `scorer`, ...) labels the collect stage's
tasks; the labels become comparisons (for the reward model) and demonstrations (from
corrections), as framework/labeling/export.py describes. Every label is kept in labels.jsonl,
with its labeler and task ids; critiques.jsonl and scores.jsonl hold those per response."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from framework import plugins
from framework.artifacts import COMPARISONS, DEMONSTRATIONS, SAMPLES, Artifact, Port
from framework.errors import ConfigError, DataError
from framework.hardware.config import device
from framework.labeling.export import write_exports
from framework.labeling.labeler import LabelSession
from framework.labeling.tasks import check_label, read_tasks
from framework.plugin_spec import NestedPlugin, PluginSpec, bind, parse_spec, stage_ports
from framework.stage import Stage, StageContext, StageResult


@dataclass
class LabelConfig:
    labeler: PluginSpec = field(default_factory=lambda: PluginSpec(name="simulated"))
    allow_ties: bool = True  # equal ranks: the tied pairs are left out of the comparisons
    # the held-out share of the comparisons, for the reward model's accuracy (whole tasks)
    eval_fraction: float = 0.1


class LabelStage(Stage):
    Config = LabelConfig
    inputs = {"samples": Port((SAMPLES,), doc="the collect stage's tasks"),
              "earlier": Port((COMPARISONS,), required=False,
                              doc="earlier rounds' comparisons, carried into the output (carry.py)")}
    outputs = {"comparisons": COMPARISONS, "demonstrations": DEMONSTRATIONS}
    launched = False  # once, in the pipeline's process: a labeler may talk to people

    @classmethod
    def parse_config(cls, node: Any, where: str) -> LabelConfig:
        config = super().parse_config(node, where)
        config.labeler = parse_spec(plugins.labelers, config.labeler, f"{where}.labeler")
        if not 0 <= config.eval_fraction < 1:
            raise ConfigError(f"{where}.eval_fraction: must lie in [0, 1), got "
                              f"{config.eval_fraction}.")
        return config

    def __init__(self, config: LabelConfig):
        if not isinstance(config.labeler, NestedPlugin):
            config = self.parse_config(dataclasses.asdict(config), "params")  # built directly
        super().__init__(config)
        self._ports, self._port_problems = stage_ports([config.labeler], dict(type(self).inputs))

    def input_ports(self) -> Mapping[str, Port]:
        return self._ports

    def check(self, inputs: Mapping[str, Artifact], where: str) -> None:
        if self._port_problems:
            raise ConfigError([f"{where}.params: {p}" for p in self._port_problems])
        self.config.labeler.instance.check(f"{where}.params.labeler.params")

    def run(self, inputs: Mapping[str, Artifact], ctx: StageContext) -> StageResult:
        cfg, where = self.config, f"stages.{ctx.name}"
        tasks = read_tasks(inputs["samples"].location)
        nested = cfg.labeler
        bind(nested, inputs)
        labeler = nested.instance
        session = LabelSession(ctx.name, ctx.output_dir, ctx.run_dir, cfg.allow_ties)
        labeler.setup(nested.artifacts, device=device(ctx.hardware), model_cfg=ctx.model,
                      session=session)
        labels = labeler.label(tasks)
        known = {t.task_id: t for t in tasks}
        seen = set()
        for label in labels:
            if label.task_id not in known:
                raise DataError(f"{where}: labeler {nested.name!r} labeled task {label.task_id!r}, "
                                f"which is not among the {len(tasks)} tasks.")
            if (label.task_id, label.labeler) in seen:
                raise DataError(f"{where}: task {label.task_id} was labeled twice by "
                                f"{label.labeler}.")
            seen.add((label.task_id, label.labeler))
            check_label(label, known[label.task_id], where, cfg.allow_ties)
        labeled = {label.task_id for label in labels if not label.skipped}
        out = ctx.output_dir
        counts = write_exports(out, tasks, labels)  # one process: the stage is not launched
        metrics = {"tasks": len(tasks), "labeled": len(labeled),
                   "skipped": sum(1 for label in labels if label.skipped),
                   "comparison_pairs": counts["comparisons.jsonl"],
                   "demonstrations": counts["demonstrations.jsonl"],
                   "critiques": counts["critiques.jsonl"],
                   "labelers": sorted({label.labeler for label in labels})}
        ctx.logger.info("label: %s", metrics)
        split = {"eval_fraction": cfg.eval_fraction} if cfg.eval_fraction else {}
        comparisons = Artifact(COMPARISONS, str(out / "comparisons.jsonl"),
                               {"format": "pairs", **split})
        if "earlier" in inputs:  # every comparison so far, for this round's reward model
            from framework_plugins.stages.label.carry import carry

            comparisons, so_far = carry(inputs["earlier"], tasks, labels, cfg.eval_fraction,
                                        out / "comparisons_so_far", where)
            metrics["so_far"] = so_far
            ctx.logger.info("label: comparisons so far %s", so_far)
        return StageResult(metrics, {
            "comparisons": comparisons,
            "demonstrations": Artifact(DEMONSTRATIONS, str(out / "demonstrations.jsonl"),
                                       {"format": "prompt_completion"})})

