"""The planner's HardwareSpec from the composed config's `hardware` profile, with the memory
command's flags on top (a flag given wins over the profile)."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from framework.hardware.config import as_hardware, local_gpu_count
from framework.memory.specs import HardwareSpec

# How a distributed profile spreads the SFT and reward-model stages over its devices.
SHARDING = {"no": "none", "ddp": "ddp", "fsdp": "fsdp"}
DEFAULT_DEVICE_GB = 24.0


def hardware_spec(cfg: Any, args: Any, dtype: str) -> HardwareSpec:
    """`args`: the memory command's parsed flags (None where not given); `dtype`: the weights'."""
    hw = as_hardware(cfg.get("hardware"))
    devices = args.num_devices or _devices(hw)
    sharding = args.sharding or _sharding(hw, devices)
    optimizer = args.optimizer or ("paged_adamw_8bit" if hw.optim and "8bit" in hw.optim
                                   else "adamw")
    checkpointing = args.gradient_checkpointing
    if checkpointing is None:
        checkpointing = hw.gradient_checkpointing
    return HardwareSpec(
        device_gb=args.device_gb or hw.device_memory_gb or DEFAULT_DEVICE_GB,
        num_devices=devices, sharding=sharding, dtype=dtype,
        compute_dtype=args.compute_dtype or _compute_dtype(hw), optimizer=optimizer,
        gradient_checkpointing=checkpointing, attention=args.attention,
        overhead_gb=args.overhead_gb, name=hw.name,
    )


def ppo_hardware(hw: HardwareSpec, gradient_checkpointing: Optional[bool] = None) -> HardwareSpec:
    """PPO drives accelerate itself: it runs as DDP under every profile (ZeRO and FSDP apply to
    the TRL stages only) and has no gradient checkpointing, whatever the profile sets for the TRL
    stages; `gradient_checkpointing` is the --gradient-checkpointing flag's what-if."""
    sharding = hw.sharding
    if sharding in ("zero2", "zero3", "fsdp"):
        sharding = "ddp" if hw.num_devices > 1 else "none"
    return dataclasses.replace(hw, sharding=sharding, gradient_checkpointing=gradient_checkpointing)


def _devices(hw) -> int:
    if hw.distributed == "no":
        return 1
    if hw.num_processes is not None:
        return hw.num_processes
    return hw.num_machines * max(local_gpu_count(), 1)


def _sharding(hw, devices: int) -> str:
    if hw.distributed == "deepspeed":
        return f"zero{hw.deepspeed.zero_stage}"
    sharding = SHARDING.get(hw.distributed, "none")
    return sharding if devices > 1 or sharding == "fsdp" else "none"


def _compute_dtype(hw) -> str | None:
    """Mixed precision on the GPU the plan is for (`auto`: bf16, as on any recent GPU)."""
    precision = hw.mixed_precision
    if precision == "auto":
        precision = "no" if hw.use_cpu else "bf16"
    return {"bf16": "bfloat16", "fp16": "float16"}.get(precision)
