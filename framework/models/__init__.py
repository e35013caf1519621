"""Model references: hub ids, local paths, and the embedded default."""

from framework.models.config import ModelConfig
from framework.models.embedded import EMBEDDED_MODELS, EMBEDDED_PREFIX, resolve_model_path
from framework.models.loading import load_kwargs, load_tokenizer

__all__ = [
    "EMBEDDED_MODELS",
    "EMBEDDED_PREFIX",
    "ModelConfig",
    "load_kwargs",
    "load_tokenizer",
    "resolve_model_path",
]
