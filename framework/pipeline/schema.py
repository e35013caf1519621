"""The root config schema. Hydra validates the composed config against it: unknown keys and
wrong types fail at composition, before anything is built. Plugin parameters (`params`) are
free-form here and checked by each plugin's own schema during planning."""

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

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
class StageTemplate:
    """One stage of every round (framework/pipeline/rounds.py): a StageNode whose strings may
    hold {round}, {previous} and {count}, and whose inputs may be {first: REF, later: REF}."""

    plugin: str = MISSING
    inputs: Dict[str, Any] = field(default_factory=dict)
    params: Dict[str, Any] = field(default_factory=dict)
    adapter: AdapterOverride = field(default_factory=AdapterOverride)


@dataclass
class RoundsSummary:
    """summary.json's `rounds` table: NAME -> a metric's path, STAGE.KEY[.KEY...]."""

    start: Dict[str, str] = field(default_factory=dict)  # round 0: what round 1 starts from
    each: Dict[str, str] = field(default_factory=dict)  # rounds 1..count ({round} in the path)


@dataclass
class RoundsConfig:
    """Iterated rounds: `stages` repeated `count` times as NAME_1, NAME_2, ... after the stage
    `after` (null: first). Empty `stages`: no rounds. See framework/pipeline/rounds.py."""

    count: int = 1
    after: Optional[str] = None
    stages: Dict[str, StageTemplate] = field(default_factory=dict)
    # One round's stage only, by its key, e.g.
    # +rounds.overrides.label_1.params.labeler.params.accept_partial=true
    overrides: Dict[str, Any] = field(default_factory=dict)
    summary: RoundsSummary = field(default_factory=RoundsSummary)


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
    # Stages repeated once per round (collect_1, label_1, ..., collect_2, ...), expanded into
    # `stages` before planning (framework/pipeline/rounds.py).
    rounds: RoundsConfig = field(default_factory=RoundsConfig)
    # Write RUN_DIR/report/report.html (plots, the evaluation, samples) when the run ends.
    report: bool = True
