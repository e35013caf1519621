"""The Stage interface: one step of a pipeline (SFT, reward-model training, RL, ...)."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Optional

from framework.artifacts import Artifact, Port
from framework.hardware.config import HardwareConfig
from framework.models.adapters import AdapterConfig
from framework.models.config import ModelConfig
from framework.plugin import Plugin

if TYPE_CHECKING:
    from framework.memory.specs import Workload


@dataclass
class StageContext:
    """What a running stage may use besides its inputs: where to write, and run-wide settings,
    each parsed once at planning."""

    name: str  # the stage's key in the recipe, e.g. "sft"
    output_dir: Path  # this stage's folder in the run directory; artifacts go here
    run_dir: Path
    seed: int
    model: ModelConfig = field(default_factory=ModelConfig)  # loading options (dtype, ...)
    hardware: Optional[HardwareConfig] = None  # the profile; None: this process, defaults
    # For a stage that trains weights (its `adapter_kinds` is not empty): the root `adapter`
    # with the stage's overrides; else None.
    adapter: Optional[AdapterConfig] = None
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("framework"))


@dataclass
class StageResult:
    metrics: dict[str, Any]
    artifacts: dict[str, Artifact]


class Stage(Plugin, ABC):
    """A pipeline step. Declares its inputs and outputs; artifacts move only through them.

    - `inputs`: name -> Port (accepted artifact kinds, required or not); a stage whose ports
      depend on its config (the RL stage: its reward sources' inputs) overrides `input_ports()`.
    - `outputs`: name -> artifact kind it produces.
    - `adapter_kinds`: the `adapter` kinds (none, lora, qlora) it can train with; empty for a
      stage that trains no weights, to which the `adapter` config does not apply.
    - `check()` runs during planning, before any weights load: validate everything cheap.
    - `run()` does the work and returns metrics and exactly the declared outputs. Under a
      multi-process hardware profile it runs in every process: write files only where
      `framework.common.distributed.is_main_process()`, and return the same metrics everywhere
      (rank 0's are recorded).
    - `launched`: False for a stage that must run once, in the pipeline's own process, under
      any hardware profile (the label stage: it talks to people and keeps one store).
    """

    inputs: ClassVar[Mapping[str, Port]] = {}
    outputs: ClassVar[Mapping[str, str]] = {}
    adapter_kinds: ClassVar[tuple[str, ...]] = ()
    launched: ClassVar[bool] = True

    def input_ports(self) -> Mapping[str, Port]:
        """The inputs of this configured stage (default: the declared `inputs`)."""
        return self.inputs

    def required_inputs(self) -> set[str]:
        """Inputs that must be wired, given this stage's config (default: the required ports)."""
        return {name for name, port in self.input_ports().items() if port.required}

    def accepted_inputs(self) -> set[str]:
        """Inputs this config uses. Wiring any other is an error: it would be silently ignored."""
        return set(self.input_ports())

    def unused_input_reason(self, name: str) -> str:
        """Why `name` is not in accepted_inputs(), for the error message."""
        return "this configuration does not read it"

    def check(self, inputs: Mapping[str, Artifact], where: str) -> None:
        """Extra validation before weights load; raise ConfigError naming `where`.

        `inputs` holds the inputs known before the run (the model and data sources); inputs wired
        to earlier stages' outputs are absent, since those do not exist yet."""

    def adapter_problems(self, adapter: AdapterConfig, where: str,
                         hardware: Optional[HardwareConfig] = None) -> list[str]:
        """What in this config cannot train with `adapter` (an AdapterConfig of a kind in
        `adapter_kinds`) on `hardware` (a HardwareConfig or None), each naming its config path
        and the fix; checked during planning."""
        return []

    def wiring_problems(self, wiring: Mapping[str, str], adapter: Optional[AdapterConfig],
                        where: str) -> list[str]:
        """What cannot work in how the inputs are wired (`wiring`: input -> its ref as written,
        e.g. {"policy": "rl_1.model", "reference": "sft.model"}) with the stage's adapter (None
        for a stage that trains no weights), each naming its config path under `where`
        (stages.NAME); checked during planning, when earlier stages' outputs are refs only."""
        return []

    def memory_workload(self, name: str, hardware: Optional[HardwareConfig] = None
                        ) -> Optional["Workload"]:
        """What the memory planner sizes for this stage (`name` is its key in the recipe): a
        framework.memory.specs workload (TrainWorkload, PPOWorkload, ...), or None for a stage
        that trains nothing (or that the planner has no model for)."""
        return None

    def output_meta(self, name: str, inputs: Mapping[str, Artifact]) -> Optional[dict]:
        """Static metadata of an output, known before running (e.g. the tokenizer it uses)."""
        return None

    @abstractmethod
    def run(self, inputs: Mapping[str, Artifact], ctx: StageContext) -> StageResult:
        """Train or transform; write artifacts under ctx.output_dir."""
