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


def top_layer_linears(model, n: int, targets, where: str) -> list[str]:
    """The qualified names of the linear layers LoRA should target in all but the lowest `n`
    decoder layers: every linear for targets="all-linear", else those named in `targets`.
    With adapters the base is frozen anyway; `freeze_layers` then keeps the adapters (and so the
    backward pass) to the top layers."""
    layers = decoder_layers(model)
    if n >= len(layers):
        raise ConfigError(f"{where}: freeze_layers={n} would leave none of the {len(layers)} "
                          f"layers to adapt; use at most {len(layers) - 1}.")
    qualified = {id(m): name for name, m in model.named_modules()}
    names = []
    for layer in list(layers)[n:]:
        prefix = qualified[id(layer)]
        for sub, module in layer.named_modules():
            # bitsandbytes' 4-bit linears subclass torch.nn.Linear as well
            if isinstance(module, torch.nn.Linear) and (
                    targets == "all-linear" or sub.rsplit(".", 1)[-1] in targets):
                names.append(f"{prefix}.{sub}")
    if not names:
        raise ConfigError(f"{where}: no module of the top {len(layers) - n} layers matches "
                          f"adapter.target_modules={list(targets)}.")
    return names
