"""The Stage interface: one step of a pipeline (SFT, reward-model training, RL, ...)."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional

from framework.artifacts import Artifact, Port
from framework.plugin import Plugin


@dataclass
class StageContext:
    """What a running stage may use besides its inputs: where to write, and run-wide settings."""

    name: str  # the stage's key in the recipe, e.g. "sft"
    output_dir: Path  # this stage's folder in the run directory; artifacts go here
    run_dir: Path
    seed: int
    model: Any  # the `model` config node (loading options such as dtype, trust_remote_code)
    hardware: Any = None
    # framework.models.adapters.AdapterConfig for a stage that trains weights (its
    # `adapter_kinds` is not empty): the root `adapter` with the stage's overrides; else None.
    adapter: Any = None
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("framework"))


@dataclass
class StageResult:
    metrics: dict[str, Any]
    artifacts: dict[str, Artifact]


class Stage(Plugin, ABC):
    """A pipeline step. Declares its inputs and outputs; artifacts move only through them.

    - `inputs`: name -> Port (accepted artifact kinds, required or not).
    - `outputs`: name -> artifact kind it produces.
    - `adapter_kinds`: the `adapter` kinds (none, lora, qlora) it can train with; empty for a
      stage that trains no weights, to which the `adapter` config does not apply.
    - `check()` runs during planning, before any weights load: validate everything cheap.
    - `run()` does the work and returns metrics and exactly the declared outputs. Under a
      multi-process hardware profile it runs in every process: write files only where
      `framework.hardware.distributed.is_main_process()`, and return the same metrics everywhere
      (rank 0's are recorded).
    """

    inputs: ClassVar[Mapping[str, Port]] = {}
    outputs: ClassVar[Mapping[str, str]] = {}
    adapter_kinds: ClassVar[tuple[str, ...]] = ()

    def required_inputs(self) -> set[str]:
        """Inputs that must be wired, given this stage's config (default: the required ports)."""
        return {name for name, port in self.inputs.items() if port.required}

    def accepted_inputs(self) -> set[str]:
        """Inputs this config uses. Wiring any other is an error: it would be silently ignored."""
        return set(self.inputs)

    def unused_input_reason(self, name: str) -> str:
        """Why `name` is not in accepted_inputs(), for the error message."""
        return "this configuration does not read it"

    def check(self, inputs: Mapping[str, Artifact], where: str) -> None:
        """Extra validation before weights load; raise ConfigError naming `where`.

        `inputs` holds the inputs known before the run (the model and data sources); inputs wired
        to earlier stages' outputs are absent, since those do not exist yet."""

    def adapter_problems(self, adapter: Any, where: str, hardware: Any = None) -> list[str]:
        """What in this config cannot train with `adapter` (an AdapterConfig of a kind in
        `adapter_kinds`) on `hardware` (a HardwareConfig or None), each naming its config path
        and the fix; checked during planning."""
        return []

    def output_meta(self, name: str, inputs: Mapping[str, Artifact]) -> Optional[dict]:
        """Static metadata of an output, known before running (e.g. the tokenizer it uses)."""
        return None

    @abstractmethod
    def run(self, inputs: Mapping[str, Artifact], ctx: StageContext) -> StageResult:
        """Train or transform; write artifacts under ctx.output_dir."""
