"""Before/after evaluation of a policy on held-out prompts: mean reward of each scorer, and the
mean KL to the reference policy, estimated on the policy's own samples as
KL(pi || pi_ref) ~ mean over responses of sum_t [log pi(y_t) - log pi_ref(y_t)]
(framework/evaluation/sampling.py).

In several processes each samples and scores its share of the prompts (seeded by rank) and the
shares are gathered, so every process gets the same, complete result."""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

from framework.common import distributed
from framework.evaluation import sampling
from framework.reward_source import RewardSource
from framework_plugins.stages.rl.config import EvaluationConfig


def sample_responses(policy, tokenizer, prompts: Sequence[list], cfg: EvaluationConfig, seed: int,
                     reference=None) -> tuple[list[str], list[float], list[float]]:
    """One seeded sample per prompt: (responses, token lengths, per-response KL to `reference`;
    empty without one)."""
    out = sampling.sample(policy, tokenizer, prompts, max_new_tokens=cfg.max_new_tokens,
                          temperature=cfg.temperature, batch_size=cfg.batch_size, seed=seed,
                          reference=reference)
    return out.responses, out.lengths, out.kl


def sample_all(policy, tokenizer, prompts: Sequence[list], cfg: EvaluationConfig,
               seed: int) -> list[str]:
    """One response per prompt, each process sampling its share: the same list on every one."""
    mine, _, _ = sample_responses(policy, tokenizer, distributed.shard(prompts), cfg,
                                  seed + distributed.rank())
    return distributed.gather(mine)


def evaluate_policy(policy, tokenizer, prompts: Sequence[list], scorers: Mapping[str, RewardSource],
                    cfg: EvaluationConfig, seed: int, reference=None) -> dict:
    """Sample `samples_per_prompt` responses per prompt (seeded), score them with every scorer
    and, given a reference model, measure the KL. Returns {scorer: mean, "kl": mean, ...}.
    `prompts` is not empty."""
    prompts = [p for p in prompts for _ in range(cfg.samples_per_prompt)]
    mine = distributed.shard(prompts)
    responses, lengths, kls = sample_responses(policy, tokenizer, mine, cfg,
                                               seed + distributed.rank(), reference)
    scores = [list(scorer.score(mine, responses)) for scorer in scorers.values()]
    rows = distributed.gather(list(zip(responses, lengths, kls or [None] * len(mine), *scores)))
    columns = list(zip(*rows))  # every prompt's response, length, KL, then each scorer's score
    responses, lengths, kls = columns[0], columns[1], columns[2]
    result = {name: _mean(column) for name, column in zip(scorers, columns[3:])}
    result["response_length"] = _mean(lengths)
    if reference is not None:
        result["kl"] = _mean(kls)
    result["samples"] = [{"prompt": p[-1]["content"], "response": r}
                         for p, r in zip(prompts[:4], responses[:4])]
    return result


def _mean(values) -> Optional[float]:
    values = list(values)
    return float(sum(values) / len(values)) if values else None
