"""Shared loading options so every stage loads models the same way, and safely: a repository's
own code runs only for the model it was enabled for, and weights load from safetensors only
unless the user opts into pickle files."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from framework.errors import ConfigError
from framework.models.embedded import EMBEDDED_PREFIX, resolve_model_path

DTYPES = ("float32", "bfloat16", "float16", "auto")
# Weight files that are Python pickles: loading one can execute arbitrary code.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def trusts_remote_code(model_cfg: Any, location: Optional[str] = None) -> bool:
    """model.trust_remote_code applies to the named model and to local checkpoints (those the
    stages train from it); another hub repository's code never runs because of it."""
    if model_cfg is None or not model_cfg.trust_remote_code:
        return False
    if location is None or location == model_cfg.name_or_path:
        return True
    return location.startswith(EMBEDDED_PREFIX) or Path(location).expanduser().is_dir()


def load_kwargs(model_cfg: Any, location: Optional[str] = None) -> dict:
    """Keyword arguments for `from_pretrained` of `location` (the named model when None) from the
    `model` config node."""
    import torch  # imported here so that reading configs stays fast

    if model_cfg.dtype not in DTYPES:
        raise ValueError(f"model.dtype: {model_cfg.dtype!r} is not one of {', '.join(DTYPES)}.")
    kwargs = {
        "dtype": model_cfg.dtype if model_cfg.dtype == "auto" else getattr(torch, model_cfg.dtype),
        "trust_remote_code": trusts_remote_code(model_cfg, location),
    }
    if not getattr(model_cfg, "allow_pickle", False):
        kwargs["use_safetensors"] = True
    if model_cfg.revision:
        kwargs["revision"] = model_cfg.revision
    return kwargs


def check_weights_format(location: str, model_cfg: Any, where: str) -> None:
    """A local checkpoint with pickle weights only is refused (unless model.allow_pickle), before
    anything is loaded; hub repositories are checked by transformers (use_safetensors=True)."""
    if getattr(model_cfg, "allow_pickle", False) or location.startswith(EMBEDDED_PREFIX):
        return
    folder = Path(location).expanduser()
    if not folder.is_dir():
        return
    files = [p for p in folder.iterdir() if p.is_file()]
    if any(p.name.endswith(".safetensors") or p.name.endswith(".safetensors.index.json")
           for p in files) or (folder / "adapter_config.json").exists():
        return
    pickles = sorted(p.name for p in files if p.suffix in PICKLE_SUFFIXES
                     or p.name.endswith(".bin.index.json"))
    if pickles:
        raise ConfigError(
            f"{where}: {location!r} holds weights only as pickle files ({', '.join(pickles)}), "
            f"which can run arbitrary code when loaded; weights load from safetensors only. "
            f"Convert the checkpoint (load it once where you trust it and save_pretrained(..., "
            f"safe_serialization=True)), or set model.allow_pickle=true if you trust the file.")


def load_pretrained(auto_cls, location: str, model_cfg: Any, where: str = "model", **extra):
    """`auto_cls.from_pretrained(location)` with the shared options; a checkpoint without
    safetensors weights is a ConfigError that says how to proceed."""
    check_weights_format(location, model_cfg, where)
    kwargs = {**load_kwargs(model_cfg, location), **extra}
    try:
        return auto_cls.from_pretrained(resolve_model_path(location), **kwargs)
    except OSError as exc:
        if kwargs.get("use_safetensors") and "safetensors" in str(exc):
            raise ConfigError(
                f"{where}: {location!r} has no safetensors weights ({str(exc).splitlines()[0]}). "
                f"Weights load from safetensors only; set model.allow_pickle=true to load pickle "
                f"weights you trust.") from exc
        raise


def load_tokenizer(location: str, model_cfg: Any = None):
    """The tokenizer of a checkpoint, with a pad token and the configured chat template."""
    from transformers import AutoTokenizer

    kwargs = {}
    if model_cfg is not None:
        kwargs["trust_remote_code"] = trusts_remote_code(model_cfg, location)
        if model_cfg.revision:
            kwargs["revision"] = model_cfg.revision
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(location), **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model_cfg is not None and model_cfg.chat_template:
        tokenizer.chat_template = model_cfg.chat_template
    return tokenizer


def check_local_config(location: str, where: str) -> None:
    """A local checkpoint folder's config.json must exist and be JSON: found at planning, not
    when the first stage loads it."""
    import json
    from pathlib import Path

    folder = Path(location).expanduser()
    if not folder.is_dir():
        return
    config = folder / "config.json"
    if not config.is_file():
        raise ConfigError(f"{where}: {str(folder)!r} has no config.json, so it is not a "
                          f"transformers checkpoint folder; point it at one (a folder written by "
                          f"save_pretrained), or give a hub id.")
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: {config} is not valid JSON ({exc}); restore it from the "
                          f"checkpoint's source, or re-save the model with save_pretrained.") from None
