"""The collect stage: K responses per prompt from a policy, the tasks labelers will rank.

Prompts come from the prompt source's training split (`num_prompts` of them; the held-out split
stays for evaluation); with `new_prompts_each_round`, round r takes the `num_prompts` after those
of rounds 1..r-1, so no two rounds label the same prompt (InstructGPT's rounds collected new
prompts). Every response is sampled with the stage's seed; a response identical to
one already sampled for its prompt is sampled again, up to `resample_tries` times, and then
dropped, and a prompt left with fewer than 2 distinct responses is dropped; both are counted in
the metrics. The tasks (tasks.jsonl) carry their provenance: the policy, the round, the seed and
the sampling settings."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

from framework.artifacts import MODEL, PROMPTS, SAMPLES, Artifact, Port
from framework.common import distributed
from framework.errors import ConfigError
from framework.labeling.tasks import TASKS_FILE, Task, write_tasks
from framework.stage import Stage, StageContext, StageResult


@dataclass
class CollectConfig:
    responses_per_prompt: int = 4  # K: InstructGPT showed labelers 4 to 9
    num_prompts: int = 32
    max_new_tokens: int = 64
    temperature: float = 1.0
    batch_size: int = 16
    resample_tries: int = 2  # a duplicate response is sampled again this many times
    round: int = 1  # which round of an iterated run these samples belong to
    new_prompts_each_round: bool = False  # round r: training prompts (r-1)n .. rn-1


class CollectStage(Stage):
    Config = CollectConfig
    inputs = {"policy": Port((MODEL,), doc="the policy whose samples are labeled"),
              "prompts": Port((PROMPTS,), doc="its training split is sampled")}
    outputs = {"samples": SAMPLES}

    @classmethod
    def parse_config(cls, node: Any, where: str) -> CollectConfig:
        config = super().parse_config(node, where)
        for key, low in (("responses_per_prompt", 2), ("num_prompts", 1), ("max_new_tokens", 1),
                         ("batch_size", 1), ("resample_tries", 0), ("round", 1)):
            if getattr(config, key) < low:
                raise ConfigError(f"{where}.{key}: must be >= {low}, got {getattr(config, key)}.")
        if config.temperature <= 0:
            raise ConfigError(f"{where}.temperature: must be > 0 (distinct samples need "
                              f"sampling), got {config.temperature}.")
        return config

    def check(self, inputs: Mapping[str, Artifact], where: str) -> None:
        """Enough training prompts for this round, where planning reads rows (local and builtin
        sources; a hub data set is counted when the stage runs)."""
        from framework.data.sources import BUILTIN_PREFIX, is_local

        source = inputs.get("prompts")
        if not self.config.new_prompts_each_round or source is None or not (
                source.location.startswith(BUILTIN_PREFIX) or is_local(source.location)):
            return
        from framework.evaluation.prompts import prompt_splits

        train, _ = prompt_splits(source, f"{where}.inputs.prompts")
        self._first_prompt(len(train), where)

    def _first_prompt(self, available: int, where: str) -> int:
        """Where this round's prompts start in the training split."""
        cfg = self.config
        if not cfg.new_prompts_each_round:
            return 0
        first = (cfg.round - 1) * cfg.num_prompts
        if first + cfg.num_prompts > available:
            raise ConfigError(
                f"{where}.params: round {cfg.round} needs training prompts {first} to "
                f"{first + cfg.num_prompts - 1}, but the training split has {available}; lower "
                f"num_prompts, or set new_prompts_each_round: false to sample the same prompts "
                f"every round.")
        return first

    def run(self, inputs: Mapping[str, Artifact], ctx: StageContext) -> StageResult:
        from framework.evaluation import sampling
        from framework.evaluation.policies import load_policy
        from framework.evaluation.prompts import prompt_splits
        from framework.models import load_tokenizer

        cfg, where = self.config, f"stages.{ctx.name}"
        prompts, _ = prompt_splits(inputs["prompts"], f"{where}.inputs.prompts")
        first = self._first_prompt(len(prompts), where)
        prompts = prompts[first: first + cfg.num_prompts]
        if not prompts:
            raise ConfigError(f"{where}.inputs.prompts: the training split is empty.")
        tokenizer = load_tokenizer(inputs["policy"].location, ctx.model)
        policy = load_policy(inputs["policy"], ctx.model, ctx.hardware, f"{where}.inputs.policy")
        k = cfg.responses_per_prompt
        responses: list[list[str]] = [[] for _ in prompts]
        wanted = [(i, k) for i in range(len(prompts))]
        resampled = 0
        for attempt in range(cfg.resample_tries + 1):
            repeated = [i for i, n in wanted for _ in range(n)]
            if not repeated:
                break
            out = sampling.sample(policy, tokenizer, [prompts[i] for i in repeated],
                                  max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                  batch_size=cfg.batch_size, seed=ctx.seed + 1000 * attempt)
            for i, text in zip(repeated, out.responses):
                if text not in responses[i] and len(responses[i]) < k:
                    responses[i].append(text)
            resampled += len(repeated) if attempt else 0
            wanted = [(i, k - len(r)) for i, r in enumerate(responses) if len(r) < k]
        dropped_duplicates = sum(n for _, n in wanted)
        settings = {"responses_per_prompt": k, "max_new_tokens": cfg.max_new_tokens,
                    "temperature": cfg.temperature}
        provenance = {"policy": inputs["policy"].location, "round": cfg.round,
                      "seed": ctx.seed, "stage": ctx.name, "settings": settings}
        tasks = [Task(_task_id(cfg.round, prompt, i), prompt, texts, provenance)
                 for i, (prompt, texts) in enumerate(zip(prompts, responses)) if len(texts) >= 2]
        path = ctx.output_dir / TASKS_FILE
        if distributed.is_main_process():
            write_tasks(path, tasks)
        metrics = {"tasks": len(tasks), "responses": sum(len(t.responses) for t in tasks),
                   "resampled": resampled, "dropped_duplicates": dropped_duplicates,
                   "dropped_prompts": len(prompts) - len(tasks), "round": cfg.round}
        ctx.logger.info("collect: %s", metrics)
        return StageResult(metrics, {"samples": Artifact(SAMPLES, str(path),
                                                         {"round": cfg.round})})


def _task_id(round_: int, prompt: Any, index: int) -> str:
    """Stable across runs of the same round and prompt set, distinct across rounds."""
    digest = hashlib.sha256(json.dumps([round_, index, prompt], sort_keys=True).encode())
    return f"r{round_}-{index:04d}-{digest.hexdigest()[:8]}"



