"""A hardware profile as TRL/transformers training arguments (what the SFT and reward-model
stages pass to their TRL config unless the stage's own `args` set the same key), and as
DeepSpeed's config: built here from the profile, never written by the user."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Optional

from framework.hardware.config import HardwareConfig, resolved_mixed_precision

# One setting under two names: transformers 5.x renamed `gradient_checkpointing` (now a
# deprecated alias that warns) to `activation_checkpointing`.
CHECKPOINTING_KEYS = ("gradient_checkpointing", "activation_checkpointing")


@functools.cache
def checkpointing_key() -> str:
    """The name the installed transformers' TrainingArguments reads without a warning."""
    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else \
        "gradient_checkpointing"


def training_args(hw: Optional[HardwareConfig]) -> dict[str, Any]:
    """TrainingArguments keys for this profile ({} without one)."""
    if hw is None:
        return {}
    precision = resolved_mixed_precision(hw)
    args: dict[str, Any] = {"use_cpu": hw.use_cpu, "bf16": precision == "bf16",
                            "fp16": precision == "fp16"}
    if hw.gradient_checkpointing is not None:
        args[checkpointing_key()] = hw.gradient_checkpointing
    if hw.optim:
        args["optim"] = hw.optim
    if hw.distributed == "deepspeed":
        args["deepspeed"] = deepspeed_config(hw)
    elif hw.distributed == "fsdp":
        args["fsdp"] = True
        args["fsdp_config"] = fsdp_config(hw)
        if hw.gradient_checkpointing:
            # FSDP's own activation checkpointing; the trainer's would all-gather every layer a
            # second time in the backward pass (transformers issue 30404).
            args[checkpointing_key()] = False
    return args


def deepspeed_config(hw: HardwareConfig) -> dict[str, Any]:
    """DeepSpeed's config for the profile's ZeRO stage, in the form transformers' Trainer
    accepts: "auto" takes batch sizes, accumulation, clipping, precision and the optimizer's
    settings from the training arguments, so the stage's `args` stay the only place to set them.
    No `optimizer` section: the Trainer builds its own (`optim`) and DeepSpeed wraps it; except
    with offload_optimizer, where DeepSpeed's AdamW (its CPU Adam) must do the step."""
    ds = hw.deepspeed
    zero: dict[str, Any] = {
        "stage": ds.zero_stage,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": "auto",
    }
    if ds.zero_stage == 3:
        zero.update({
            "stage3_prefetch_bucket_size": "auto",
            "stage3_param_persistence_threshold": "auto",
            # save_model writes one ordinary checkpoint, not per-rank shards
            "stage3_gather_16bit_weights_on_model_save": True,
        })
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if ds.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    config: dict[str, Any] = {
        "zero_optimization": zero,
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
    }
    if ds.offload_optimizer:
        config["optimizer"] = {"type": "AdamW", "params": {
            "lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"}}
    return config


def fsdp_config(hw: HardwareConfig) -> dict[str, Any]:
    """transformers' `fsdp_config` for FSDP2 full sharding, one unit per decoder layer."""
    fsdp = hw.fsdp
    return {
        "version": 2,
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "reshard_after_forward": fsdp.reshard_after_forward,
        "cpu_offload": fsdp.cpu_offload,
        "state_dict_type": fsdp.state_dict_type,
        "activation_checkpointing": bool(hw.gradient_checkpointing),
    }
