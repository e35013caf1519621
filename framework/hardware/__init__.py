"""Hardware profiles (the `hardware` config group): devices, precision, processes, sharding.

config.py          the HardwareConfig schema and its planning-time checks
training_args.py   a profile as TRL/transformers training arguments, DeepSpeed's config
accelerate_args.py a profile as `accelerate launch` arguments and Accelerator kwargs
large_models.py    the adapter a profile picks for models too large to fine-tune fully
cpu_allocator.py   keep freed memory for reuse when training on a CPU (glibc)
cpu_decode.py      faster thin linear products and token draws while sampling on a CPU
"""

from framework.hardware.config import (
    HardwareConfig,
    as_hardware,
    compute_dtype,
    hardware_problems,
    launches,
    resolved_mixed_precision,
)

__all__ = ["HardwareConfig", "as_hardware", "compute_dtype", "hardware_problems", "launches",
           "resolved_mixed_precision"]
