"""The RL stage: optimize a policy with any Optimizer against any RewardSource, and report the
reward (and any further scorers, such as a simulated labeler) before and after, plus the KL."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from framework import plugins
from framework.artifacts import MODEL, PROMPTS, REWARD_MODEL, TEXT, Artifact, Port
from framework.errors import ConfigError
from framework.evaluation.policies import load_policy
from framework.evaluation.prompts import check_held_out, prompt_splits
from framework.hardware.config import device
from framework.common.distributed import is_main_process
from framework.optimizer import PolicyTrainingJob
from framework.plugin_spec import NestedPlugin, bind, parse_spec, stage_ports, wired_ports
from framework.common.files import write_json_atomic
from framework.stage import Stage, StageContext, StageResult
from framework_plugins.stages.rl.config import RLConfig


class RLStage(Stage):
    Config = RLConfig
    # Fixed inputs; each reward source (and report scorer) adds the inputs its ports are wired to
    # (framework.plugin_spec: a port is fed by the stage input of its name unless its spec's
    # `inputs` names another), so several reward models, a judge model, ... can be wired.
    inputs = {
        "policy": Port((MODEL,), doc="the policy to start from; also the frozen reference "
                                     "unless `reference` is wired"),
        "reference": Port((MODEL,), required=False,
                          doc="the frozen KL reference, if not the policy (an iterated round: "
                              "start from the previous round's policy, keep SFT as reference)"),
        "prompts": Port((PROMPTS,), doc="rollout prompts; the eval split is used for reporting"),
        "reward_model": Port((REWARD_MODEL,), required=False,
                             doc="for a reward source or a critic that reads a reward model"),
        "pretraining": Port((TEXT,), required=False, doc="pretraining text for PPO-ptx"),
    }
    outputs = {"model": MODEL}
    # The optimizer decides which it supports (PPO: all three, on one shared base); adapter
    # inputs (a LoRA SFT policy, a LoRA reward model) are merged into their bases first.
    adapter_kinds = ("none", "lora", "qlora")

    @classmethod
    def parse_config(cls, node: Any, where: str) -> RLConfig:
        """Also resolves the nested optimizer and reward sources: their names, params and
        wiring are checked here, with their config paths."""
        config = super().parse_config(node, where)
        config.optimizer = parse_spec(plugins.optimizers, config.optimizer, f"{where}.optimizer")
        if config.reward is not None:
            config.reward = parse_spec(plugins.reward_sources, config.reward, f"{where}.reward")
        config.report = {name: parse_spec(plugins.reward_sources, spec, f"{where}.report.{name}")
                         for name, spec in config.report.items()}
        clash = {"reward", "kl", "response_length"} & set(config.report)
        if clash:
            raise ConfigError(f"{where}.report: {sorted(clash)} are reserved metric names; "
                              f"rename those report entries.")
        evaluation = config.evaluation
        for key in ("num_prompts", "samples_per_prompt", "max_new_tokens", "batch_size"):
            if getattr(evaluation, key) < (0 if key == "num_prompts" else 1):
                raise ConfigError(f"{where}.evaluation.{key}: must be >= "
                                  f"{0 if key == 'num_prompts' else 1}, got {getattr(evaluation, key)}.")
        if evaluation.temperature <= 0:
            raise ConfigError(f"{where}.evaluation.temperature: must be > 0.")
        return config

    def __init__(self, config: RLConfig):
        if not isinstance(config.optimizer, NestedPlugin):  # built outside the planner
            config = self.parse_config(dataclasses.asdict(config), "params")
        super().__init__(config)
        self.optimizer = config.optimizer.instance
        self.reward = config.reward.instance if config.reward is not None else None
        self.report = {name: nested.instance for name, nested in config.report.items()}
        self._sources = ([("reward", config.reward)] if config.reward is not None else []) + \
            [(f"report.{name}", nested) for name, nested in config.report.items()]
        self._ports, self._port_problems = stage_ports(
            [nested for _, nested in self._sources], type(self).inputs)

    # ------------------------------------------------------------------- planning-time checks
    def input_ports(self) -> Mapping[str, Port]:
        return self._ports

    def adapter_problems(self, adapter, where: str, hardware=None) -> list[str]:
        stage = where.removesuffix(".adapter")
        return self.optimizer.adapter_problems(adapter, where, f"{stage}.params.optimizer.params",
                                               hardware)

    def memory_workload(self, name: str, hardware=None):
        return self.optimizer.memory_workload(name, self.config.reward)

    def wiring_problems(self, wiring, adapter, where: str) -> list[str]:
        reference = wiring.get("reference")
        if reference is None or reference == wiring.get("policy") or adapter is None:
            return []
        return self.optimizer.reference_problems(adapter, f"{where}.inputs.reference",
                                                 f"{where}.adapter")

    def _source_inputs(self) -> dict[str, bool]:
        """Stage inputs the reward sources read -> whether one of them requires it."""
        needs: dict[str, bool] = {}
        for _, nested in self._sources:
            for wired in wired_ports(nested):
                needs[wired.stage_input] = needs.get(wired.stage_input, False) or wired.spec.required
        return needs

    def required_inputs(self) -> set[str]:
        required = {"policy", "prompts"} | {k for k, v in self._source_inputs().items() if v}
        if self.optimizer.uses_reward_model():
            required.add("reward_model")
        if self.optimizer.uses_pretraining():
            required.add("pretraining")
        return required

    def accepted_inputs(self) -> set[str]:
        accepted = {"policy", "prompts"} | set(self._source_inputs())
        if self.optimizer.accepts_reference():
            accepted.add("reference")
        if self.optimizer.uses_reward_model():
            accepted.add("reward_model")
        if self.optimizer.uses_pretraining():
            accepted.add("pretraining")
        return accepted

    def unused_input_reason(self, name: str) -> str:
        if name == "reference":
            return (f"optimizer {self.config.optimizer.name!r} keeps its starting policy as the "
                    f"KL reference")
        if name == "pretraining":
            return (f"optimizer {self.config.optimizer.name!r} does not use pretraining text with "
                    f"these params; for PPO-ptx set params.optimizer.params.ptx_coef > 0")
        return "neither a reward source nor the optimizer reads it"

    def check(self, inputs: Mapping[str, Artifact], where: str) -> None:
        if self.reward is None and self.optimizer.needs_reward:
            raise ConfigError(f"{where}.params.reward: optimizer {self.config.optimizer.name!r} "
                              f"needs a reward source; set params.reward.name (e.g. reward_model).")
        if self._port_problems:
            raise ConfigError(self._port_problems)
        for key, nested in self._sources:
            nested.instance.check(f"{where}.params.{key}.params")
        if self.config.evaluation.num_prompts and "prompts" in inputs:
            check_held_out(inputs["prompts"], f"{where}.inputs.prompts",
                           "reward_before/reward_after are",
                           f"{where}.params.evaluation.num_prompts=0")

    # ---------------------------------------------------------------------------------- run
    def run(self, inputs: Mapping[str, Artifact], ctx: StageContext) -> StageResult:
        from framework.data.report import DataReport
        from framework.models import load_tokenizer

        where = f"stages.{ctx.name}"
        for _, nested in self._sources:
            bind(nested, inputs)
            nested.instance.setup(nested.artifacts, device=device(ctx.hardware), model_cfg=ctx.model)
        scorers = {"reward": self.reward} if self.reward is not None else {}
        scorers.update(self.report)

        tokenizer = load_tokenizer(inputs["policy"].location, ctx.model)
        report = DataReport()
        train_prompts, eval_prompts = prompt_splits(inputs["prompts"], f"{where}.inputs.prompts",
                                               report.source("prompts"))
        eval_prompts = eval_prompts[: self.config.evaluation.num_prompts]
        calibrate = self.reward is not None and self.reward.needs_calibration
        reference = inputs.get("reference", inputs["policy"])  # the frozen KL reference
        separate = reference.location != inputs["policy"].location
        before, after, start = {}, {}, None
        if eval_prompts or (calibrate and not separate):
            start = _load_policy(inputs["policy"], ctx)  # once, for both; freed before training
        if calibrate:  # on the reference's samples: the SFT policy's, as InstructGPT does
            self._calibrate(_load_policy(reference, ctx, "reference") if separate else start,
                            tokenizer, train_prompts, ctx)
        if eval_prompts:
            before = self._evaluate(start, None, tokenizer, eval_prompts, scorers, ctx, "before")
        del start
        job = PolicyTrainingJob(
            policy=inputs["policy"], prompts=inputs["prompts"], reward=self.reward,
            pretraining=inputs.get("pretraining"), output_dir=ctx.output_dir, seed=ctx.seed,
            model=ctx.model, reward_model=inputs.get("reward_model"), hardware=ctx.hardware,
            data_report=report, adapter=ctx.adapter, stage=ctx.name,
            reference=reference if separate else None,
        )
        policy, train_metrics = self.optimizer.train(job)
        if eval_prompts:
            after = self._evaluate(_load_policy(policy, ctx),
                                   _load_policy(reference, ctx, "reference"),
                                   tokenizer, eval_prompts, scorers, ctx, "after")

        metrics: dict[str, Any] = {}
        for name in scorers:
            metrics[f"{name}_before"] = before.get(name)
            metrics[f"{name}_after"] = after.get(name)
        metrics["kl"] = after.get("kl")
        metrics["eval_prompts"] = len(eval_prompts)
        metrics.update({f"train_{k}": v for k, v in train_metrics.items()})
        metrics["skipped_rows"] = report.counts()
        if is_main_process():  # every process computed the same; one writes
            report.write(ctx.output_dir)
        return StageResult(metrics, {"model": policy})

    def _evaluate(self, model, reference, tokenizer, prompts, scorers, ctx, label) -> dict:
        from framework_plugins.stages.rl.evaluation import evaluate_policy

        if not prompts:
            return {}
        result = evaluate_policy(model, tokenizer, prompts, scorers, self.config.evaluation,
                                 seed=ctx.seed, reference=reference)
        if is_main_process():
            write_json_atomic(ctx.output_dir / f"eval_{label}.json", result)
        ctx.logger.info("RL evaluation %s: %s", label,
                        {k: v for k, v in result.items() if k != "samples"})
        return result

    def _calibrate(self, model, tokenizer, prompts, ctx) -> None:
        """Normalize the reward on samples of the reference (SFT) policy, as InstructGPT does."""
        from framework_plugins.stages.rl.evaluation import sample_all

        n = self.reward.calibration_size
        if len(prompts) < n:
            raise ConfigError(f"stages.{ctx.name}.params.reward.params.calibration_size={n} but the "
                              f"prompt set has only {len(prompts)} training prompts; lower it.")
        chosen = prompts[:n]
        responses = sample_all(model, tokenizer, chosen, self.config.evaluation, ctx.seed)
        stats = self.reward.calibrate(chosen, responses)  # on every process: the same samples
        if is_main_process():
            write_json_atomic(ctx.output_dir / "reward_calibration.json", stats)
        ctx.logger.info("reward normalized on %d samples of the reference policy: %s", n, stats)


def _load_policy(artifact: Artifact, ctx: StageContext, name: str = "policy"):
    return load_policy(artifact, ctx.model, ctx.hardware, f"stages.{ctx.name}.inputs.{name}")
