"""The `hardware` config group: where and how every stage runs (conf/hardware/*.yaml).

One process on a CPU or one GPU runs stages in the `python -m framework` process itself; a
distributed profile (`distributed: ddp | deepspeed | fsdp`) makes the runner launch each stage
through `accelerate launch` (framework/pipeline/launch.py). Everything here is checked at
planning time, before any weights load or any process starts.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any, Optional

from framework.errors import ConfigError

DISTRIBUTED = ("no", "ddp", "deepspeed", "fsdp")
MIXED_PRECISION = ("no", "bf16", "fp16", "auto")
DEEPSPEED_INSTALL = "pip install deepspeed"


@dataclass
class DeepSpeedSettings:
    """ZeRO (Rajbhandari et al. 2020), used when `distributed: deepspeed`. The framework builds
    DeepSpeed's config from these; there is no JSON to write."""

    zero_stage: int = 2  # 2: shard optimizer states and gradients; 3: the weights too
    offload_optimizer: bool = False  # optimizer states in CPU memory (ZeRO-Offload)
    offload_params: bool = False  # weights in CPU memory (ZeRO-3 only)


@dataclass
class FSDPSettings:
    """PyTorch FSDP2 full sharding, used when `distributed: fsdp`; forwarded to transformers'
    `fsdp_config` (each decoder layer is one shard unit, from the model's _no_split_modules)."""

    cpu_offload: bool = False
    reshard_after_forward: bool = True  # false: keep layers gathered until the backward pass
    state_dict_type: str = "FULL_STATE_DICT"  # the saved model is one ordinary checkpoint


@dataclass
class HardwareConfig:
    name: str = "cpu"
    # no: one process, run inside `python -m framework`; ddp | deepspeed | fsdp: each stage is
    # launched with accelerate in `num_processes` processes.
    distributed: str = "no"
    # Processes over all machines (accelerate's --num_processes); null: every visible GPU of
    # each machine.
    num_processes: Optional[int] = 1
    num_machines: int = 1
    machine_rank: int = 0  # this machine's rank (0 .. num_machines - 1), e.g. $SLURM_NODEID
    main_process_ip: Optional[str] = None  # machine 0's address; needed with num_machines > 1
    main_process_port: Optional[int] = None  # null: a free port on one machine, 29500 on several
    use_cpu: bool = True  # run on the CPU even where a GPU is present (gloo for several processes)
    # no | bf16 | fp16 | auto (bf16 where the GPU supports it, else no)
    mixed_precision: str = "no"
    # Stage settings the profile sets for TRL stages unless a stage's own `args` do (null: leave
    # TRL's default). optim: a transformers optimizer name, e.g. paged_adamw_8bit (bitsandbytes).
    gradient_checkpointing: Optional[bool] = False
    optim: Optional[str] = None
    # Memory of one device in GiB, for `python -m framework memory` (null: its --device-gb).
    device_memory_gb: Optional[float] = None
    # With a model of at least `large_model_params` parameters and adapter=none, train this
    # adapter instead (single_gpu: qlora, so a 7B-class model fits one 24 GB card). null: off.
    large_model_adapter: Optional[str] = None
    large_model_params: float = 3.0e9
    deepspeed: DeepSpeedSettings = field(default_factory=DeepSpeedSettings)
    fsdp: FSDPSettings = field(default_factory=FSDPSettings)


def as_hardware(node: Any) -> Optional[HardwareConfig]:
    """The `hardware` node (DictConfig, mapping or HardwareConfig) as a HardwareConfig; None
    stays None (a stage run outside the pipeline: the libraries' own defaults apply)."""
    if node is None or isinstance(node, HardwareConfig):
        return node
    from framework.plugin import parse_dataclass

    return parse_dataclass(HardwareConfig, node, "hardware")


def launches(hw: Optional[HardwareConfig]) -> bool:
    """Whether stages run in processes started by accelerate rather than in this process."""
    if hw is None or hw.distributed == "no":
        return False
    return hw.distributed in ("deepspeed", "fsdp") or total_processes(hw) > 1 or hw.num_machines > 1


def total_processes(hw: HardwareConfig) -> int:
    if hw.num_processes is not None:
        return hw.num_processes
    return hw.num_machines * max(local_gpu_count(), 1)


def local_gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolved_mixed_precision(hw: HardwareConfig) -> str:
    """no | bf16 | fp16, with `auto` decided on this machine."""
    if hw.mixed_precision != "auto":
        return hw.mixed_precision
    if hw.use_cpu:
        return "no"
    import torch

    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def device(hw: Optional[HardwareConfig]) -> Optional[str]:
    """Where a stage should put a model it runs itself: "cpu" under use_cpu, else None (the
    library default: this process's GPU where there is one)."""
    return "cpu" if hw is not None and hw.use_cpu else None


def compute_dtype(hw: Optional[HardwareConfig]) -> Optional[str]:
    """The dtype activations run in under the profile's mixed precision (None: full precision)."""
    if hw is None:
        return None
    return {"bf16": "bfloat16", "fp16": "float16"}.get(resolved_mixed_precision(hw))


def hardware_problems(hw: HardwareConfig) -> list[str]:
    """Everything wrong with a profile on this machine, each naming its `hardware.KEY`."""
    problems = []
    if hw.distributed not in DISTRIBUTED:
        problems.append(f"hardware.distributed: {hw.distributed!r} is not one of "
                        f"{', '.join(DISTRIBUTED)}.")
    if hw.mixed_precision not in MIXED_PRECISION:
        problems.append(f"hardware.mixed_precision: {hw.mixed_precision!r} is not one of "
                        f"{', '.join(MIXED_PRECISION)}.")
    if hw.num_processes is not None and hw.num_processes < 1:
        problems.append(f"hardware.num_processes: must be >= 1 (or null for every GPU), got "
                        f"{hw.num_processes}.")
    if hw.num_machines < 1:
        problems.append(f"hardware.num_machines: must be >= 1, got {hw.num_machines}.")
    elif not 0 <= hw.machine_rank < hw.num_machines:
        problems.append(f"hardware.machine_rank: must be in 0..{hw.num_machines - 1} "
                        f"(num_machines={hw.num_machines}), got {hw.machine_rank}.")
    if problems:
        return problems
    if hw.distributed == "no":
        if (hw.num_processes or 1) > 1 or hw.num_machines > 1:
            problems.append(
                f"hardware.num_processes={hw.num_processes}, num_machines={hw.num_machines}: "
                f"profile {hw.name!r} runs one process; choose a distributed profile, e.g. "
                f"hardware=multi_gpu hardware.num_processes={hw.num_processes}.")
        problems += _device_problems(hw, 1)
    else:
        problems += _distributed_problems(hw)
    if hw.mixed_precision == "bf16" and not hw.use_cpu and local_gpu_count():
        import torch

        if not torch.cuda.is_bf16_supported():
            problems.append("hardware.mixed_precision: bf16 is not supported by this GPU; set "
                            "hardware.mixed_precision=fp16 (or auto).")
    if hw.optim and "8bit" in hw.optim and not _importable("bitsandbytes"):
        problems.append(f"hardware.optim: {hw.optim} needs bitsandbytes; pip install "
                        f"rlhf-framework[qlora], or set hardware.optim=null.")
    if hw.large_model_adapter not in (None, "lora", "qlora"):
        problems.append(f"hardware.large_model_adapter: {hw.large_model_adapter!r} is not one of "
                        f"lora, qlora, null.")
    return problems


def _distributed_problems(hw: HardwareConfig) -> list[str]:
    problems = []
    if hw.num_processes is not None and hw.num_processes % hw.num_machines:
        problems.append(f"hardware.num_processes={hw.num_processes} is not divisible by "
                        f"num_machines={hw.num_machines}; it counts the processes of all "
                        f"machines together.")
    if hw.num_machines > 1 and not hw.main_process_ip:
        problems.append("hardware.main_process_ip: required with num_machines > 1: the address "
                        "of the machine with machine_rank 0 (under SLURM the first host of "
                        "$SLURM_JOB_NODELIST).")
    if hw.num_processes is None and hw.use_cpu:
        problems.append("hardware.num_processes: null means one process per GPU; with "
                        "use_cpu=true set a number.")
    if hw.distributed == "deepspeed":
        if hw.deepspeed.zero_stage not in (2, 3):
            problems.append(f"hardware.deepspeed.zero_stage: {hw.deepspeed.zero_stage} is not 2 "
                            f"or 3.")
        if hw.deepspeed.offload_params and hw.deepspeed.zero_stage != 3:
            problems.append("hardware.deepspeed.offload_params: needs zero_stage=3 (ZeRO-2 does "
                            "not shard the weights).")
        if not _importable("deepspeed"):
            problems.append(f"hardware.distributed: deepspeed is not installed; "
                            f"{DEEPSPEED_INSTALL}.")
    if hw.distributed in ("deepspeed", "fsdp") and hw.use_cpu:
        problems.append(f"hardware.use_cpu: {hw.distributed} shards over GPUs; on a CPU use "
                        f"hardware=multi_gpu hardware.use_cpu=true (DDP over gloo).")
    if not problems:
        per_machine = total_processes(hw) // hw.num_machines
        problems += _device_problems(hw, per_machine)
    return problems


def _device_problems(hw: HardwareConfig, per_machine: int) -> list[str]:
    """On GPU: this machine must have a GPU for each of its processes. On CPU anything goes."""
    if hw.use_cpu:
        return []
    gpus = local_gpu_count()
    if gpus >= per_machine:
        return []
    if gpus == 0:
        return [f"hardware.use_cpu: profile {hw.name!r} runs on GPUs and this machine has none; "
                f"use hardware=cpu, or set hardware.use_cpu=true to run its {per_machine} "
                f"process(es) on the CPU."]
    return [f"hardware.num_processes: profile {hw.name!r} needs {per_machine} GPU(s) on this "
            f"machine, which has {gpus}; lower hardware.num_processes (it counts all machines' "
            f"processes), or set hardware.use_cpu=true to run on the CPU."]


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_hardware(node: Any) -> HardwareConfig:
    """Parse and check the `hardware` node; raises one ConfigError listing every problem."""
    hw = as_hardware(node)
    problems = hardware_problems(hw)
    if problems:
        raise ConfigError(problems)
    return hw
