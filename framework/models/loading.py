"""Shared loading options so every stage loads models the same way."""

from __future__ import annotations

from typing import Any

from framework.models.embedded import resolve_model_path

DTYPES = ("float32", "bfloat16", "float16", "auto")


def load_kwargs(model_cfg: Any) -> dict:
    """Keyword arguments for `from_pretrained` from the `model` config node."""
    import torch  # imported here so that reading configs stays fast

    if model_cfg.dtype not in DTYPES:
        raise ValueError(f"model.dtype: {model_cfg.dtype!r} is not one of {', '.join(DTYPES)}.")
    kwargs = {
        "dtype": model_cfg.dtype if model_cfg.dtype == "auto" else getattr(torch, model_cfg.dtype),
        "trust_remote_code": bool(model_cfg.trust_remote_code),
    }
    if model_cfg.revision:
        kwargs["revision"] = model_cfg.revision
    return kwargs


def load_tokenizer(location: str, model_cfg: Any = None):
    """The tokenizer of a checkpoint, with a pad token and the configured chat template."""
    from transformers import AutoTokenizer

    kwargs = {}
    if model_cfg is not None:
        kwargs["trust_remote_code"] = bool(model_cfg.trust_remote_code)
        if model_cfg.revision:
            kwargs["revision"] = model_cfg.revision
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(location), **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model_cfg is not None and model_cfg.chat_template:
        tokenizer.chat_template = model_cfg.chat_template
    return tokenizer
