"""Each stage's workload, read from a composed recipe (no plugin is built, no weights load)."""

from __future__ import annotations

from typing import Any, Mapping, Union

from omegaconf import OmegaConf

from framework.errors import ConfigError
from framework.memory.specs import PPOWorkload, TrainWorkload, UnplannedStage, dtype_name

# The defaults of trl.SFTConfig / trl.RewardConfig for the keys read here (a test checks them
# against the installed TRL, so reading a recipe does not import it).
TRL_DEFAULTS = {
    "sft": {"per_device_train_batch_size": 8, "max_length": 1024,
            "gradient_accumulation_steps": 1, "gradient_checkpointing": True},
    "reward_model": {"per_device_train_batch_size": 8, "max_length": 1024,
                     "gradient_accumulation_steps": 1, "gradient_checkpointing": True},
}

Workload = Union[TrainWorkload, PPOWorkload, UnplannedStage]


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def stage_workloads(cfg: Any) -> list[Workload]:
    """One workload per stage of the composed config, in the recipe's order."""
    out: list[Workload] = []
    for name, node in (_plain(cfg.stages) or {}).items():
        plugin = node.get("plugin", "")
        params = node.get("params") or {}
        if plugin in TRL_DEFAULTS:
            out.append(_train_workload(name, plugin, params.get("args") or {}))
        elif plugin == "rl":
            out.append(_rl_workload(name, params))
        else:
            out.append(UnplannedStage(name, plugin, "the planner has no memory model for this "
                                                    "plugin"))
    return out


def _train_workload(stage: str, kind: str, args: Mapping[str, Any]) -> TrainWorkload:
    values = {**TRL_DEFAULTS[kind], **{k: v for k, v in args.items() if v is not None}}
    compute = None
    if args.get("bf16"):
        compute = "bfloat16"
    elif args.get("fp16"):
        compute = "float16"
    where = f"stages.{stage}.params.args"
    for key in ("per_device_train_batch_size", "max_length", "gradient_accumulation_steps"):
        if not isinstance(values[key], int) or values[key] <= 0:
            raise ConfigError(f"{where}.{key}={values[key]!r}: must be a positive integer.")
    return TrainWorkload(
        stage=stage, kind=kind, batch_size=values["per_device_train_batch_size"],
        max_length=values["max_length"],
        gradient_accumulation_steps=values["gradient_accumulation_steps"],
        gradient_checkpointing=bool(values["gradient_checkpointing"]),
        compute_dtype=compute,
    )


def _rl_workload(stage: str, params: Mapping[str, Any]) -> Union[PPOWorkload, UnplannedStage]:
    optimizer = params.get("optimizer") or {"name": "ppo"}
    if optimizer.get("name", "ppo") != "ppo":
        return UnplannedStage(stage, f"rl/{optimizer.get('name')}",
                              "the planner has a memory model for the ppo optimizer only")
    from framework_plugins.ppo.config import PPOConfig

    try:
        ppo = PPOConfig(**(optimizer.get("params") or {}))
    except TypeError as exc:
        raise ConfigError(f"stages.{stage}.params.optimizer.params: {exc}") from None
    problems = ppo.problems()
    if problems:
        raise ConfigError([f"stages.{stage}.params.optimizer.params.{p}" for p in problems])
    reward = params.get("reward", {"name": "reward_model"})
    return PPOWorkload(
        stage=stage, batch_size=ppo.batch_size, num_minibatches=ppo.num_minibatches,
        gradient_accumulation_steps=ppo.gradient_accumulation_steps,
        max_prompt_length=ppo.max_prompt_length, max_new_tokens=ppo.max_new_tokens,
        ptx_batch_size=ppo.ptx_batch_size if ppo.ptx_coef > 0 else 0,
        ptx_max_length=ppo.ptx_max_length if ppo.ptx_coef > 0 else 0,
        reward_model=bool(reward) and reward.get("name") == "reward_model",
    )


def model_dtype(cfg: Any, checkpoint_dtype: str | None) -> str:
    """model.dtype, with "auto" meaning the checkpoint's own dtype (float32 if it names none)."""
    value = cfg.model.dtype
    if value == "auto":
        value = checkpoint_dtype or "float32"
    return dtype_name(value, "model.dtype")
