"""Model references: hub ids, local paths, and the embedded default."""

from framework.models.config import ModelConfig
from framework.models.embedded import EMBEDDED_MODELS, EMBEDDED_PREFIX, resolve_model_path
from framework.models.loading import (
    check_weights_format,
    load_kwargs,
    load_pretrained,
    load_tokenizer,
    trusts_remote_code,
)

__all__ = [
    "EMBEDDED_MODELS",
    "EMBEDDED_PREFIX",
    "ModelConfig",
    "check_weights_format",
    "load_kwargs",
    "load_pretrained",
    "load_tokenizer",
    "resolve_model_path",
    "trusts_remote_code",
]
