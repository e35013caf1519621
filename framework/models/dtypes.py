"""Canonical names and sizes of the floating-point dtypes models load and compute in."""

from __future__ import annotations

from framework.errors import ConfigError

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16",
                 "float": "float32"}

def dtype_name(value: str, where: str = "dtype") -> str:
    """Canonical torch dtype name for 'bf16', 'bfloat16', 'torch.bfloat16', ..."""
    name = str(value).removeprefix("torch.")
    name = DTYPE_ALIASES.get(name, name)
    if name not in DTYPE_BYTES:
        raise ConfigError(f"{where}: {value!r} is not one of float32 (fp32), bfloat16 (bf16), "
                          f"float16 (fp16).")
    return name
