"""The `args:` mapping of a stage -> a TRL config, with framework defaults and clear errors."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Mapping

import torch

from framework.errors import ConfigError

# Set by the framework, so a recipe cannot point two stages at one folder.
FRAMEWORK_OWNED = ("output_dir",)


def default_args(output_dir: str, seed: int) -> dict[str, Any]:
    """What a stage passes unless the recipe says otherwise."""
    return {
        "output_dir": output_dir,
        "seed": seed,
        "report_to": "none",  # no tracker is contacted unless asked for
        # TRL turns bf16 on by default, which fails on machines without bf16 support (CPUs).
        "bf16": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
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
    try:
        return config_cls(**{**defaults, **args})
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{where}.params.args: {config_cls.__name__} rejected the arguments "
            f"{sorted(args)}: {exc}"
        ) from None
