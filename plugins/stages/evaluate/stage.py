"""The evaluate stage: any policies (the SFT model, the RL policy, each round's) side by side on
held-out prompts, several samples each. Per policy: the mean score under each scorer, the KL to
the baseline policy, response length, distinct-1/2, self-BLEU and token entropy
(framework/evaluation/); per policy but the baseline: the win rate against the baseline under
the judge scorer, with a bootstrap confidence interval. Per scorer named in `pairwise` (a
reward model, say): accuracy and calibration on held-out comparisons (calibration.py).

Every policy samples with the same seeds (common random numbers), so differences come from the
policies, not from the draw. In several processes each takes its share of the prompts."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

from framework import plugins
from framework.artifacts import COMPARISONS, MODEL, PROMPTS, REWARD_MODEL, Artifact, Port
from framework.common import distributed
from framework.common.files import write_json_atomic, write_text_atomic
from framework.errors import ConfigError
from framework.evaluation import diversity
from framework.evaluation.calibration import pairwise_agreement
from framework.evaluation.policies import load_policy
from framework.evaluation.prompts import check_held_out, prompt_splits
from framework.evaluation.win_rate import win_rate
from framework.hardware.config import device
from framework.plugin_spec import NestedPlugin, bind, parse_spec, stage_ports, wired_ports
from framework.stage import Stage, StageContext, StageResult
from framework_plugins.stages.evaluate.config import EvaluateConfig

PER_POLICY = ("kl", "response_length", "distinct_1", "distinct_2", "self_bleu", "entropy")


class EvaluateStage(Stage):
    Config = EvaluateConfig
    inputs = {"prompts": Port((PROMPTS,), doc="its held-out split is evaluated on"),
              "comparisons": Port((COMPARISONS,), required=False,
                                  doc="held-out pairs for the `pairwise` scorers")}
    outputs: Mapping[str, str] = {}

    @classmethod
    def parse_config(cls, node: Any, where: str) -> EvaluateConfig:
        config = super().parse_config(node, where)
        if not config.policies:
            raise ConfigError(f"{where}.policies: empty; list the stage inputs that hold the "
                              f"policies, e.g. [sft, rl], and wire each under inputs.")
        if len(set(config.policies)) != len(config.policies):
            raise ConfigError(f"{where}.policies: {config.policies} names a policy twice.")
        if "prompts" in config.policies:
            raise ConfigError(f"{where}.policies: 'prompts' is the prompt input; name the "
                              f"policies' inputs otherwise.")
        if config.baseline is not None and config.baseline not in config.policies:
            raise ConfigError(f"{where}.baseline: {config.baseline!r} is not one of policies "
                              f"{config.policies}.")
        if not config.scorers:
            raise ConfigError(f"{where}.scorers: empty; name at least one reward source, e.g. "
                              f"{{labeler: {{name: function, params: {{function: "
                              f"framework.data.builtin.labeler:score}}}}}}.")
        config.scorers = {name: parse_spec(plugins.reward_sources, spec, f"{where}.scorers.{name}")
                          for name, spec in config.scorers.items()}
        clash = (set(PER_POLICY) | {"win_rate"}) & set(config.scorers)
        if clash:
            raise ConfigError(f"{where}.scorers: {sorted(clash)} are reserved metric names; "
                              f"rename those scorers.")
        if config.judge is not None and config.judge not in config.scorers:
            raise ConfigError(f"{where}.judge: {config.judge!r} is not one of scorers "
                              f"{sorted(config.scorers)}.")
        unknown = [name for name in config.pairwise if name not in config.scorers]
        if unknown:
            raise ConfigError(f"{where}.pairwise: {unknown} are not among scorers "
                              f"{sorted(config.scorers)}.")
        for key, low in (("calibration_bins", 2), ("max_prompt_length", 1), ("num_prompts", 1), ("samples_per_prompt", 1), ("max_new_tokens", 1),
                         ("batch_size", 1), ("bootstrap_resamples", 1)):
            if getattr(config, key) < low:
                raise ConfigError(f"{where}.{key}: must be >= {low}, got {getattr(config, key)}.")
        if config.temperature <= 0:
            raise ConfigError(f"{where}.temperature: must be > 0, got {config.temperature}.")
        if not 0 < config.confidence < 1:
            raise ConfigError(f"{where}.confidence: must lie in (0, 1), got {config.confidence}.")
        return config

    def __init__(self, config: EvaluateConfig):
        if not all(isinstance(s, NestedPlugin) for s in config.scorers.values()):
            config = self.parse_config(dataclasses.asdict(config), "params")  # built directly
        super().__init__(config)
        self.baseline = config.baseline or config.policies[0]
        self.judge = config.judge or next(iter(config.scorers))
        fixed = dict(type(self).inputs)
        fixed.update({name: Port((MODEL,), doc="a policy to evaluate") for name in config.policies})
        self._ports, self._port_problems = stage_ports(list(config.scorers.values()), fixed)
        clash = {w.stage_input for nested in config.scorers.values() for w in wired_ports(nested)
                 } & set(config.policies)
        if clash:
            self._port_problems.append(
                f"scorers read the stage inputs {sorted(clash)}, which are policies; wire the "
                f"scorers' ports to other inputs with `inputs: {{PORT: NAME}}` in their specs.")

    def memory_workload(self, name: str, hardware=None):
        from framework.memory.specs import EvaluateWorkload

        cfg = self.config
        return EvaluateWorkload(
            stage=name, batch_size=cfg.batch_size, max_prompt_length=cfg.max_prompt_length,
            max_new_tokens=cfg.max_new_tokens,
            # learned reward models and judge models among the scorers, beside the policies
            reward_models=sum(REWARD_MODEL in port.kinds for nested in cfg.scorers.values()
                              for port in getattr(nested.cls, "inputs", {}).values()),
            judge_models=sum(MODEL in port.kinds for nested in cfg.scorers.values()
                             for port in getattr(nested.cls, "inputs", {}).values()))

    def input_ports(self) -> Mapping[str, Port]:
        return self._ports

    def check(self, inputs: Mapping[str, Artifact], where: str) -> None:
        if self._port_problems:
            raise ConfigError([f"{where}.params: {p}" for p in self._port_problems])
        for name, nested in self.config.scorers.items():
            nested.instance.check(f"{where}.params.scorers.{name}.params")
        if "prompts" in inputs:
            check_held_out(inputs["prompts"], f"{where}.inputs.prompts", "the evaluation is",
                           "another prompt source")
        if self.config.pairwise and "comparisons" in inputs:  # a data source; a stage's: at run
            check_held_out(inputs["comparisons"], f"{where}.inputs.comparisons",
                           "pairwise accuracy is", f"{where}.params.pairwise=[]")

    def wiring_problems(self, wiring, adapter, where: str) -> list[str]:
        if self.config.pairwise and "comparisons" not in wiring:
            return [f"{where}.inputs.comparisons: params.pairwise {self.config.pairwise} needs "
                    f"held-out comparisons; wire one (e.g. comparisons: data.comparisons) or "
                    f"set pairwise: []."]
        return []

    # ---------------------------------------------------------------------------------- run
    def run(self, inputs: Mapping[str, Artifact], ctx: StageContext) -> StageResult:
        from framework.models import load_tokenizer

        cfg = self.config
        where = f"stages.{ctx.name}"
        scorers = {}
        for name, nested in cfg.scorers.items():
            bind(nested, inputs)
            nested.instance.setup(nested.artifacts, device=device(ctx.hardware), model_cfg=ctx.model)
            scorers[name] = nested.instance
        _, prompts = prompt_splits(inputs["prompts"], f"{where}.inputs.prompts")
        prompts = prompts[: cfg.num_prompts]
        if not prompts:
            raise ConfigError(f"{where}.inputs.prompts: the held-out split is empty.")
        tokenizer = load_tokenizer(inputs[self.baseline].location, ctx.model)
        reference = load_policy(inputs[self.baseline], ctx.model, ctx.hardware,
                                f"{where}.inputs.{self.baseline}")
        samples, table = {}, {}
        for name in cfg.policies:
            policy = reference if name == self.baseline else load_policy(
                inputs[name], ctx.model, ctx.hardware, f"{where}.inputs.{name}")
            samples[name] = self._sample(policy, tokenizer, prompts, scorers, ctx,
                                         None if name == self.baseline else reference)
            table[name] = _summary(samples[name])
            ctx.logger.info("evaluate %s: %s", name, table[name])
            del policy
        wins = {}
        for name in cfg.policies:
            if name != self.baseline:
                wins[name] = self._win_rate(scorers[self.judge], prompts, samples[name],
                                            samples[self.baseline], ctx.seed)
                table[name]["win_rate"] = wins[name]["win_rate"]
        metrics = {"policies": table, "win_rate": wins, "baseline": self.baseline,
                   "judge": self.judge, "prompts": len(prompts),
                   "samples_per_prompt": cfg.samples_per_prompt}
        if cfg.pairwise:
            metrics["pairwise"] = self._pairwise(scorers, inputs["comparisons"],
                                                 f"{where}.inputs.comparisons", ctx)
        if distributed.is_main_process():
            write_json_atomic(ctx.output_dir / "evaluation.json", metrics)
            lines = [json.dumps({"policy": name, **row}) for name, rows in samples.items()
                     for row in rows]
            write_text_atomic(ctx.output_dir / "samples.jsonl", "\n".join(lines) + "\n")
        return StageResult(metrics, {})

    def _sample(self, policy, tokenizer, prompts, scorers, ctx, reference) -> list[dict]:
        """Every (prompt, sample) of one policy with its scores, in prompt-major order."""
        from framework.evaluation import sampling

        cfg = self.config
        repeated = [(i, p) for i, p in enumerate(prompts) for _ in range(cfg.samples_per_prompt)]
        mine = distributed.shard(repeated)
        out = sampling.sample(policy, tokenizer, [p for _, p in mine],
                              max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                              batch_size=cfg.batch_size, seed=ctx.seed + distributed.rank(),
                              reference=reference, entropy=True,
                              max_prompt_length=cfg.max_prompt_length)
        scores = {name: scorer.score([p for _, p in mine], out.responses)
                  for name, scorer in scorers.items()}
        rows = [{"prompt_index": i, "prompt": p, "response": out.responses[k],
                 "response_length": out.lengths[k],
                 "kl": out.kl[k] if reference is not None else 0.0,
                 "entropy": out.entropy[k],
                 "scores": {name: float(s[k]) for name, s in scores.items()}}
                for k, (i, p) in enumerate(mine)]
        return distributed.gather(rows)

    def _pairwise(self, scorers, comparisons: Artifact, where: str, ctx) -> dict:
        """Each `pairwise` scorer on the held-out pairs (every process scores them all: they
        are few, and no gather is needed)."""
        from framework.data import load_comparisons, source_from_artifact

        _, held_out = load_comparisons(source_from_artifact(comparisons, where), where)
        if held_out is None or len(held_out) == 0:
            raise ConfigError(f"{where}: the held-out split is empty.")
        prompts = list(held_out["prompt"])
        chosen = [c[-1]["content"] for c in held_out["chosen"]]
        rejected = [r[-1]["content"] for r in held_out["rejected"]]
        out = {}
        for name in self.config.pairwise:
            result = pairwise_agreement(scorers[name].score(prompts, chosen),
                                        scorers[name].score(prompts, rejected),
                                        bins=self.config.calibration_bins)
            ctx.logger.info("evaluate %s on %d held-out pairs: accuracy %.3f, ECE %.3f", name,
                            result["pairs"], result["accuracy"], result["ece"])
            out[name] = result
        return out

    def _win_rate(self, judge, prompts, policy_rows, baseline_rows, seed) -> dict:
        """Sample j of a prompt against the baseline's sample j of the same prompt."""
        verdicts = judge.compare([r["prompt"] for r in policy_rows],
                                 [r["response"] for r in policy_rows],
                                 [r["response"] for r in baseline_rows])
        k = self.config.samples_per_prompt
        per_prompt = [verdicts[i * k:(i + 1) * k] for i in range(len(prompts))]
        return win_rate(per_prompt, resamples=self.config.bootstrap_resamples,
                        confidence=self.config.confidence, seed=seed).to_json()


def _summary(rows: list[dict]) -> dict:
    """Means over a policy's samples; diversity per prompt, then averaged."""
    groups: dict[int, list[str]] = {}
    for row in rows:
        groups.setdefault(row["prompt_index"], []).append(row["response"])
    groups_list = list(groups.values())
    out = {name: _mean([r["scores"][name] for r in rows]) for name in rows[0]["scores"]}
    out.update(
        kl=_mean([r["kl"] for r in rows]),
        response_length=_mean([r["response_length"] for r in rows]),
        distinct_1=diversity.per_prompt_mean(groups_list, diversity.distinct_n, 1),
        distinct_2=diversity.per_prompt_mean(groups_list, diversity.distinct_n, 2),
        self_bleu=diversity.per_prompt_mean(groups_list, diversity.self_bleu),
        entropy=_mean([r["entropy"] for r in rows]),
    )
    return out


def _mean(values) -> float:
    return float(sum(values) / len(values))
