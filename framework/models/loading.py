"""Shared loading options so every stage loads models the same way."""

from __future__ import annotations

from typing import Any

import torch

from framework.models.embedded import resolve_model_path

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}


def load_kwargs(model_cfg: Any) -> dict:
    """Keyword arguments for `from_pretrained` from the `model` config node."""
    kwargs = {
        "dtype": DTYPES[model_cfg.dtype],
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
