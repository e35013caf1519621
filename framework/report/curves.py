"""The series a stage's training log holds, in an order that reads: the objective first, then
what it costs (KL), then the optimizer's health.

TRL's log history mixes training entries (loss, grad_norm, learning_rate), evaluation entries
(eval_*) and one closing entry of run totals; PPO logs one entry per step. Bookkeeping keys
(epoch, runtimes, throughputs, FLOPs) and the closing totals are not curves."""

from __future__ import annotations

import math

# the first keys shown, where a stage logged them; the rest follow alphabetically
ORDER = (
    # SFT, reward model, DPO, KTO (TRL)
    "loss", "eval_loss", "accuracy", "eval_accuracy", "margin", "eval_margin", "mean_reward", "rewards/accuracies", "eval_rewards/accuracies",
    "rewards/margins", "eval_rewards/margins", "mean_token_accuracy", "eval_mean_token_accuracy",
    # PPO: the objective, its parts, then the cost and the optimizer's health
    "rlhf_reward", "score", "non_score_reward", "score_with_penalty", "kl", "beta", "entropy",
    "response_length", "ended_with_eos", "policy_clipfrac", "value_clipfrac", "policy_loss",
    "value_loss", "ptx_loss", "approx_kl_old", "value_mean", "return_mean",
    # GRPO / RLOO (TRL)
    "reward", "reward_std", "completions/mean_length", "clip_ratio/region_mean",
    "learning_rate", "grad_norm",
)
BOOKKEEPING = ("step", "epoch", "total_flos", "num_tokens")
BOOKKEEPING_SUFFIXES = ("_runtime", "_per_second")
# TRL's closing entry: the run's totals, one point each
TOTALS = ("train_runtime", "train_loss")


def series(log: list[dict]) -> dict[str, tuple[list[float], list[float]]]:
    """key -> (steps, values), numbers only (a null, i.e. a NaN the trainer logged, is kept as
    NaN so the curve shows a gap), in ORDER."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    for entry in log:
        if "step" not in entry or any(k in entry for k in TOTALS):
            continue
        for key, value in entry.items():
            if _bookkeeping(key) or isinstance(value, bool):
                continue
            if value is None:
                value = math.nan
            if not isinstance(value, (int, float)):
                continue
            steps, values = out.setdefault(key, ([], []))
            steps.append(entry["step"])
            values.append(float(value))
    rank = {key: i for i, key in enumerate(ORDER)}
    return dict(sorted(out.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def _bookkeeping(key: str) -> bool:
    return key in BOOKKEEPING or key.endswith(BOOKKEEPING_SUFFIXES)
