"""A hardware profile as `accelerate launch` arguments (how the runner starts a stage's
processes) and as `Accelerator` keyword arguments (for code that drives accelerate itself,
such as PPO)."""

from __future__ import annotations

from typing import Any, Optional

from framework.hardware.config import HardwareConfig, resolved_mixed_precision, total_processes

DEFAULT_MULTI_MACHINE_PORT = 29500


def launch_args(hw: HardwareConfig, config_file: Optional[str] = None) -> list[str]:
    """Arguments of `accelerate launch` for a stage under this profile.

    Every process is started as torchrun does (`--multi_gpu`, which on a CPU with use_cpu runs
    DDP over gloo). DeepSpeed and FSDP are switched on by the stages' training arguments
    (framework/hardware/training_args.py), which transformers' Trainer turns into accelerate's
    plugins; PPO drives accelerate itself and runs as DDP under every profile. Every value is
    passed explicitly, and `config_file` (written from `accelerate_config`) stands in for a
    user's `accelerate config` default file, which would otherwise fill in the rest."""
    processes = total_processes(hw)
    port = hw.main_process_port
    if port is None:
        port = DEFAULT_MULTI_MACHINE_PORT if hw.num_machines > 1 else 0  # 0: a free port
    args = ["--num_processes", str(processes), "--num_machines", str(hw.num_machines),
            "--mixed_precision", resolved_mixed_precision(hw), "--dynamo_backend", "no",
            "--main_process_port", str(port)]
    if processes > 1:
        args.insert(0, "--multi_gpu")
    if hw.num_machines > 1:
        args += ["--machine_rank", str(hw.machine_rank), "--main_process_ip", hw.main_process_ip]
    if config_file:
        args = ["--config_file", config_file, *args]
    return args


def accelerate_config(hw: HardwareConfig) -> dict[str, Any]:
    """The launch's accelerate config file: the profile, and accelerate's defaults elsewhere."""
    processes = total_processes(hw)
    return {"compute_environment": "LOCAL_MACHINE",
            "distributed_type": "MULTI_GPU" if processes > 1 else "NO",
            "num_processes": processes, "num_machines": hw.num_machines,
            "machine_rank": hw.machine_rank, "main_process_ip": hw.main_process_ip,
            "mixed_precision": resolved_mixed_precision(hw), "use_cpu": hw.use_cpu,
            "gpu_ids": "all", "debug": False}


def launch_env(hw: HardwareConfig) -> dict[str, str]:
    """Environment for the launched processes: use_cpu reaches every Accelerator and
    TrainingArguments they build (accelerate's own variable)."""
    return {"ACCELERATE_USE_CPU": "true"} if hw.use_cpu else {}


def accelerator_kwargs(hw: Optional[HardwareConfig]) -> dict[str, Any]:
    """`Accelerator(**kwargs)` for this profile ({} without one: accelerate's defaults)."""
    if hw is None:
        return {}
    return {"cpu": hw.use_cpu, "mixed_precision": resolved_mixed_precision(hw)}


def make_accelerator(hardware: Optional[HardwareConfig] = None):
    """An Accelerator for the profile. A stage that runs after another in the same process gets
    a fresh accelerator state (as transformers' TrainingArguments does), so an earlier trainer's
    mixed-precision choice does not clash with this one's."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    kwargs = accelerator_kwargs(hardware)
    if kwargs:
        AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(**kwargs)
