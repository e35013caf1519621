"""Freeze the embeddings and the lowest decoder layers of a transformers model.

Training only the top layers (and the head) keeps the backward pass short: on a CPU this is
what makes a reward model or SFT run fit in minutes. The frozen layers still run forward.
"""

from __future__ import annotations

import torch

from framework.errors import ConfigError


def decoder_layers(model) -> torch.nn.ModuleList:
    """The stack of transformer blocks: the ModuleList as long as config.num_hidden_layers."""
    n = getattr(model.config, "num_hidden_layers", None)
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise ConfigError(f"cannot find the {n} decoder layers of {type(model).__name__} to freeze; "
                      f"set freeze_layers=0 for this model.")


def freeze_lower_layers(model, n: int, where: str) -> int:
    """Freeze the input embeddings and the lowest `n` layers; returns the frozen parameter count."""
    if n <= 0:
        return 0
    layers = decoder_layers(model)
    if n >= len(layers):
        raise ConfigError(f"{where}: freeze_layers={n} would freeze all {len(layers)} layers; "
                          f"use at most {len(layers) - 1}.")
    frozen = [model.get_input_embeddings(), *layers[:n]]
    tied = getattr(model.config, "tie_word_embeddings", False) and hasattr(model, "lm_head")
    if tied:  # the output head shares the embedding matrix: it stays trainable
        frozen = frozen[1:]
    count = 0
    for module in frozen:
        for p in module.parameters():
            count += p.numel() if p.requires_grad else 0
            p.requires_grad_(False)
    return count
