"""The root config schema. Hydra validates the composed config against it: unknown keys and
wrong types fail at composition, before anything is built. Plugin parameters (`params`) are
free-form here and checked by each plugin's own schema during planning."""

from dataclasses import dataclass, field
from typing import Any, Dict

from omegaconf import MISSING

from framework.data.config import DataSourceConfig
from framework.hardware.config import HardwareConfig
from framework.models.adapters import AdapterConfig, AdapterOverride
from framework.models.config import ModelConfig


@dataclass
class StageNode:
    plugin: str = MISSING  # a registered stage name, or "package.module:Class"
    # input name -> "model", "data.NAME" or "STAGE.OUTPUT" (an earlier stage's output)
    inputs: Dict[str, str] = field(default_factory=dict)
    params: Dict[str, Any] = field(default_factory=dict)
    # Keys of the root `adapter` to change for this stage only, e.g. stages.rl.adapter.kind=none.
    adapter: AdapterOverride = field(default_factory=AdapterOverride)


@dataclass
class RootConfig:
    seed: int = 42
    model: ModelConfig = field(default_factory=ModelConfig)
    # LoRA / QLoRA for every stage that trains weights (conf/adapter: none, lora, qlora).
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    # Devices, precision, processes and sharding for every stage (conf/hardware: cpu,
    # single_gpu, multi_gpu, deepspeed_zero2, deepspeed_zero3, fsdp).
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    data: Dict[str, DataSourceConfig] = field(default_factory=dict)
    # Run in this order (the order of the recipe's mapping).
    stages: Dict[str, StageNode] = field(default_factory=dict)
    # Write RUN_DIR/report/report.html (plots, the evaluation, samples) when the run ends.
    report: bool = True
