"""Memory planner: each stage's peak device memory from shapes and settings, no weights loaded.

`python -m framework memory +recipe=instructgpt --device-gb 24 [--adapter qlora ...] [--json]`
Inputs are plain dataclasses (specs.py); the formulas and their sources are listed in
estimate.py's docstring; each stage plugin describes its workload (Stage.memory_workload),
which command.py reads from a composed recipe.
"""

from framework.memory.estimate import (
    Component,
    StageEstimate,
    activation_bytes,
    estimate_ppo,
    estimate_training,
    kv_cache_bytes,
    logits_bytes,
)
from framework.memory.specs import AdapterSpec, HardwareSpec, PPOWorkload, TrainWorkload
from framework.models.shape import ModelShape, model_shape_from_config, read_model_shape

__all__ = [
    "AdapterSpec",
    "Component",
    "HardwareSpec",
    "ModelShape",
    "PPOWorkload",
    "StageEstimate",
    "TrainWorkload",
    "activation_bytes",
    "estimate_ppo",
    "estimate_training",
    "kv_cache_bytes",
    "logits_bytes",
    "model_shape_from_config",
    "read_model_shape",
]
