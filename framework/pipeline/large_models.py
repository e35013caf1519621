"""A profile's adapter for models too large to fine-tune fully on it: the single_gpu profile
trains QLoRA adapters (the `adapter=qlora` defaults) for a model of 3B parameters or more, so
a 7B-class model fits one 24 GB card. Only when the run asks for full fine-tuning (the root
`adapter.kind` is none); the model's size is read from its config, no weights load."""

from __future__ import annotations

import logging
from typing import Any, Optional

from framework.errors import FrameworkError
from framework.hardware.config import as_hardware

log = logging.getLogger("framework")


def apply_large_model_adapter(cfg: Any) -> Optional[str]:
    """Set `cfg.adapter.kind` to the profile's `large_model_adapter` where it applies; returns
    what was done (also logged), or None. A model whose config cannot be read is left alone:
    planning reports it."""
    hardware = as_hardware(cfg.get("hardware"))
    adapter = cfg.get("adapter")
    if hardware is None or not hardware.large_model_adapter or adapter is None:
        return None
    if adapter.get("kind", "none") != "none":
        return None
    from framework.models.shape import read_model_shape

    model = cfg.model
    try:
        params = read_model_shape(model.name_or_path, revision=model.revision,
                                  trust_remote_code=bool(model.trust_remote_code)).causal_lm_params
    except FrameworkError:
        return None
    if params < hardware.large_model_params:
        return None
    adapter.kind = hardware.large_model_adapter
    message = (f"hardware={hardware.name}: {model.name_or_path} has {params / 1e9:.1f}B "
               f"parameters (>= hardware.large_model_params={hardware.large_model_params:.3g}), "
               f"so every stage trains {hardware.large_model_adapter} adapters "
               f"(adapter={hardware.large_model_adapter}); set hardware.large_model_adapter=null "
               f"to fine-tune all weights.")
    log.info("%s", message)
    return message
