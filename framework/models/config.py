"""The `model` config group's schema."""

from dataclasses import dataclass
from typing import Optional


@dataclass
class ModelConfig:
    # A hub id ("HuggingFaceTB/SmolLM2-135M-Instruct"), a local directory, or "embedded:NAME"
    # for a model shipped in an installed package (see framework.models.embedded).
    name_or_path: str = "embedded:smollm2-135m-instruct"
    revision: Optional[str] = None
    # float32 | bfloat16 | float16 | auto
    dtype: str = "float32"
    # Off by default: a model repository's own Python code is never run unless asked for. When
    # on, it applies to this model and to local checkpoints (the ones stages train from it),
    # never to another hub repository.
    trust_remote_code: bool = False
    # Off by default: weights load from safetensors only. Pickle checkpoints (pytorch_model.bin,
    # *.pt) can run arbitrary code when loaded; set true only for files you trust.
    allow_pickle: bool = False
    # A Jinja chat template for models that have none (base models); null keeps the model's.
    chat_template: Optional[str] = None
