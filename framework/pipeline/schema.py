"""The root config schema. Hydra validates the composed config against it: unknown keys and
wrong types fail at composition, before anything is built. Plugin parameters (`params`) are
free-form here and checked by each plugin's own schema during planning."""

from dataclasses import dataclass, field
from typing import Any, Dict

from omegaconf import MISSING

from framework.data.config import DataSourceConfig
from framework.models.config import ModelConfig


@dataclass
class StageNode:
    plugin: str = MISSING  # a registered stage name, or "package.module:Class"
    # input name -> "model", "data.NAME" or "STAGE.OUTPUT" (an earlier stage's output)
    inputs: Dict[str, str] = field(default_factory=dict)
    params: Dict[str, Any] = field(default_factory=dict)


@dataclass
class RootConfig:
    seed: int = 42
    model: ModelConfig = field(default_factory=ModelConfig)
    data: Dict[str, DataSourceConfig] = field(default_factory=dict)
    # Run in this order (the order of the recipe's mapping).
    stages: Dict[str, StageNode] = field(default_factory=dict)
