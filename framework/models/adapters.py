"""The `adapter` config group: train LoRA adapters (`lora`), or LoRA on a 4-bit base (`qlora`),
instead of full weights.

The root `adapter` node applies to every stage that trains model weights; `stages.NAME.adapter`
overrides its keys for one stage (e.g. `stages.rl.adapter.kind=none`). Everything here is
checked at planning time, before weights load; `lora_config` and `quantization_config` build the
peft and bitsandbytes objects at run time.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Mapping, Optional

from framework.errors import ConfigError
from framework.models.dtypes import dtype_name

if TYPE_CHECKING:
    from framework.hardware.config import HardwareConfig

ADAPTER_KINDS = ("none", "lora", "qlora")
QLORA_INSTALL = "pip install rlhf-framework[qlora]"


@dataclass
class AdapterConfig:
    # none: full fine-tuning; lora: LoRA adapters on a frozen base; qlora: LoRA adapters on a
    # base loaded in 4-bit NF4 with double quantization (bitsandbytes).
    kind: str = "none"
    rank: int = 16
    alpha: int = 32  # LoRA scales its update by alpha / rank
    dropout: float = 0.05
    # "all-linear" (every linear layer but the output head, as peft) or a list of module names,
    # e.g. [q_proj, v_proj].
    target_modules: Any = "all-linear"
    # qlora: the dtype the 4-bit weights are dequantized to for each matmul, and of the adapters.
    # null: the hardware profile's compute_dtype, else model.dtype.
    compute_dtype: Optional[str] = None
    # Also write the base with the adapter merged in, as a full checkpoint, to STAGE/merged.
    export_merged: bool = False

    @property
    def enabled(self) -> bool:
        return self.kind != "none"

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class AdapterOverride:
    """`stages.NAME.adapter`: the keys of the root `adapter` to change for one stage (null:
    inherit), e.g. `stages.rl.adapter.kind=none`. Same fields as AdapterConfig."""

    kind: Optional[str] = None
    rank: Optional[int] = None
    alpha: Optional[int] = None
    dropout: Optional[float] = None
    target_modules: Any = None
    compute_dtype: Optional[str] = None
    export_merged: Optional[bool] = None


def parse_adapter(node: Any, where: str = "adapter", installed: bool = True) -> AdapterConfig:
    """The root `adapter` node, parsed and checked (with `installed`, also that what it needs is
    importable); errors name `adapter.KEY`."""
    from framework.plugin import parse_dataclass

    config = parse_dataclass(AdapterConfig, node, where)
    check_adapter(config, where, installed)
    return config


def stage_adapter(root: AdapterConfig, override: Optional[Mapping], where: str,
                  installed: bool = True) -> AdapterConfig:
    """One stage's adapter: the (checked) root with the stage's non-null `adapter` keys on top;
    errors name `stages.NAME.adapter.KEY`."""
    if override is not None and not isinstance(override, Mapping):
        from omegaconf import OmegaConf

        override = OmegaConf.to_container(override, resolve=True)
    changed = {k: v for k, v in (override or {}).items() if v is not None}
    if not changed:
        return root
    return parse_adapter({**asdict(root), **changed}, where, installed)


def check_adapter(config: AdapterConfig, where: str, installed: bool = True) -> None:
    """Values, and (`installed`) that bitsandbytes is importable for qlora. `where` is the
    adapter node."""
    if config.kind not in ADAPTER_KINDS:
        raise ConfigError(f"{where}.kind: {config.kind!r} is not one of "
                          f"{', '.join(ADAPTER_KINDS)}.")
    if config.rank < 1:
        raise ConfigError(f"{where}.rank: must be >= 1, got {config.rank}.")
    if config.alpha <= 0:
        raise ConfigError(f"{where}.alpha: must be > 0, got {config.alpha}.")
    if not 0 <= config.dropout < 1:
        raise ConfigError(f"{where}.dropout: must be in [0, 1), got {config.dropout}.")
    targets = config.target_modules
    if not (targets == "all-linear" or (isinstance(targets, (list, tuple)) and targets
                                        and all(isinstance(t, str) and t for t in targets))):
        raise ConfigError(f"{where}.target_modules: {targets!r} is neither 'all-linear' nor a "
                          f"list of module names such as [q_proj, v_proj].")
    if config.compute_dtype is not None:
        dtype_name(config.compute_dtype, f"{where}.compute_dtype")
    if installed and config.kind == "qlora" and not _importable("bitsandbytes"):
        raise ConfigError(f"{where}: kind=qlora loads the base in 4 bits with bitsandbytes, which "
                          f"is not installed. Install it with `{QLORA_INSTALL}`, or use "
                          f"adapter=lora.")


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def compute_dtype(adapter: AdapterConfig, model_cfg: Any,
                  hardware: Optional["HardwareConfig"] = None) -> str:
    """adapter.compute_dtype, else the hardware profile's (bf16/fp16 under its mixed precision),
    else model.dtype (float32 for model.dtype=auto)."""
    if adapter.compute_dtype:
        return dtype_name(adapter.compute_dtype, "adapter.compute_dtype")
    if hardware is not None:
        from framework.hardware import compute_dtype as profile_dtype

        profile = profile_dtype(hardware)
        if profile:
            return profile
    dtype = getattr(model_cfg, "dtype", None) or "auto"
    return "float32" if dtype == "auto" else dtype_name(dtype, "model.dtype")


def quantization_config(dtype: str):
    """QLoRA's base (Dettmers et al. 2023): 4-bit NF4 weights with double quantization."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=getattr(torch, dtype),
    )


def keep_one_4bit_kernel(model) -> int:
    """Turn off bitsandbytes' in-place repacking of 4-bit weights on CPUs with AVX512-BF16
    (bitsandbytes >= 0.48: the first eval-mode, no-grad forward of a Linear4bit converts its
    weight for another inference kernel, and every later forward, training included, then
    computes with it, 0.3% off in the logits of a tiny model). PPO rolls out and trains on one
    4-bit base, and a reward model is scored as it was trained: numbers must not depend on
    which forward ran first, nor on the CPU's flags. Returns the number of layers changed."""
    changed = 0
    for module in model.modules():
        if getattr(module, "support_avx512bf16_for_cpu", False):
            module.support_avx512bf16_for_cpu = False
            changed += 1
    return changed


def lora_config(adapter: AdapterConfig, task_type: str, modules_to_save=None):
    """peft.LoraConfig for `task_type` CAUSAL_LM or SEQ_CLS; `modules_to_save` are trained in
    full next to the adapter (a reward model's score head)."""
    from peft import LoraConfig

    targets = adapter.target_modules
    return LoraConfig(
        r=adapter.rank,
        lora_alpha=adapter.alpha,
        lora_dropout=adapter.dropout,
        target_modules=targets if isinstance(targets, str) else list(targets),
        task_type=task_type,
        modules_to_save=list(modules_to_save) if modules_to_save else None,
    )
