"""The `args:` mapping of a stage -> a TRL config, with framework defaults and clear errors."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Mapping, Optional

import torch

from framework.common.redact import pickle_redacted
from framework.errors import ConfigError
from framework.hardware.config import HardwareConfig
from framework.hardware.training_args import CHECKPOINTING_KEYS

# Set by the framework, so a recipe cannot point two stages at one folder.
FRAMEWORK_OWNED = ("output_dir",)


def default_args(output_dir: str, seed: int, hardware: Optional[HardwareConfig] = None
                 ) -> dict[str, Any]:
    """What a stage passes unless the recipe says otherwise: the framework's defaults, then the
    hardware profile's settings (precision, use_cpu, gradient checkpointing, optimizer,
    DeepSpeed or FSDP; framework.hardware.training_args)."""
    from framework.hardware.training_args import training_args

    return {
        "output_dir": output_dir,
        "seed": seed,
        "report_to": "none",  # no tracker is contacted unless asked for
        # TRL turns bf16 on by default, which fails on machines without bf16 support (CPUs).
        "bf16": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        # A NaN loss is logged as NaN, not replaced by the running mean: the divergence guard
        # (framework.trl.training) must see it.
        "logging_nan_inf_filter": False,
        **training_args(hardware),
    }


def build_config(
    config_cls: type, args: Mapping[str, Any], defaults: Mapping[str, Any], where: str
):
    """`config_cls(**defaults, **args)`; unknown or invalid args become a ConfigError."""
    args = dict(args)
    owned = [k for k in FRAMEWORK_OWNED if k in args]
    if owned:
        raise ConfigError(
            f"{where}.params.args.{owned[0]}: set by the framework (the stage's folder in the run "
            f"directory); remove it from the recipe."
        )
    names = {f.name for f in dataclasses.fields(config_cls) if f.init}
    unknown = [k for k in args if k not in names]
    if unknown:
        problems = []
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(names), n=3)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            problems.append(f"{where}.params.args.{key}: not a parameter of {config_cls.__name__}.{hint}")
        raise ConfigError(problems)
    if args.get("fp16") and "bf16" not in args:
        args["bf16"] = False  # asking for fp16 means not bf16
    args, defaults = _checkpointing_by_its_current_name(config_cls, args, dict(defaults))
    try:
        config = config_cls(**{**defaults, **args})
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{where}.params.args: {config_cls.__name__} rejected the arguments "
            f"{sorted(args)}: {exc}"
        ) from None
    problems = value_problems(config)
    if problems:
        raise ConfigError([f"{where}.params.args.{p}" for p in problems])
    pickle_redacted(config_cls)  # the Trainer pickles it into every checkpoint
    return config


def _checkpointing_by_its_current_name(config_cls, args: dict, defaults: dict):
    """Gradient checkpointing under the name the installed transformers reads without a
    deprecation warning: the stage's own setting (under either name) wins over the profile's,
    and the TRL class's default for the old name is passed under the new one."""
    old, new = CHECKPOINTING_KEYS
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    if any(key in args for key in CHECKPOINTING_KEYS):
        defaults = {k: v for k, v in defaults.items() if k not in CHECKPOINTING_KEYS}
    if new not in fields:
        return args, defaults
    if old in args and new not in args:
        args = {**{k: v for k, v in args.items() if k != old}, new: args[old]}
    if new not in args and new not in defaults and fields[old].default is not None:
        defaults[new] = fields[old].default
    return args, defaults


def value_problems(config) -> list[str]:
    """Values TrainingArguments accepts but that cannot train: `KEY: why. fix.` per problem."""
    p = []
    if not config.learning_rate > 0:
        p.append(f"learning_rate: {config.learning_rate} must be > 0 (e.g. 5e-5).")
    if config.max_steps != -1 and config.max_steps < 1:
        p.append(f"max_steps: {config.max_steps} must be a positive number of steps, or -1 to "
                 f"train for num_train_epochs.")
    elif config.max_steps == -1 and not config.num_train_epochs > 0:
        p.append(f"num_train_epochs: {config.num_train_epochs} must be > 0 (or set max_steps).")
    for key in ("per_device_train_batch_size", "per_device_eval_batch_size",
                "gradient_accumulation_steps"):
        if getattr(config, key) < 1:
            p.append(f"{key}: {getattr(config, key)} must be >= 1.")
    if str(getattr(config.save_strategy, "value", config.save_strategy)) == "steps" \
            and not config.save_steps > 0:
        p.append(f"save_steps: {config.save_steps} must be > 0 with save_strategy=steps "
                 f"(or set save_strategy: 'no').")
    max_length = getattr(config, "max_length", None)
    if max_length is not None and max_length < 1:
        p.append(f"max_length: {max_length} must be >= 1 tokens, or null for no limit.")
    if config.max_grad_norm is not None and config.max_grad_norm < 0:
        p.append(f"max_grad_norm: {config.max_grad_norm} must be >= 0 (0 turns clipping off).")
    return p


def evaluates(config) -> bool:
    """Whether the trainer evaluates during training (so it needs held-out data)."""
    return str(getattr(config.eval_strategy, "value", config.eval_strategy)) != "no"


def check_eval_data(config, source, where: str) -> None:
    """An eval_strategy with no held-out split fails only once training reaches it: say so now."""
    if evaluates(config) and not (source.eval_split or source.eval_fraction > 0):
        raise ConfigError(
            f"{where}.params.args.eval_strategy: {config.eval_strategy.value!r} evaluates during "
            f"training, but the data source {source.path!r} has no held-out rows; set its "
            f"eval_fraction (or eval_split), or set eval_strategy: 'no'.")
