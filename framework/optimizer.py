"""The Optimizer interface: a policy-optimization algorithm (PPO, GRPO, RLOO, ...)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional

from framework.artifacts import Artifact
from framework.data.report import DataReport
from framework.hardware.config import HardwareConfig
from framework.models.adapters import AdapterConfig
from framework.models.config import ModelConfig
from framework.plugin import Plugin
from framework.reward_source import RewardSource

if TYPE_CHECKING:
    from framework.memory.specs import Workload
    from framework.plugin_spec import NestedPlugin


@dataclass
class PolicyTrainingJob:
    """Everything an optimizer gets from the RL stage, typed (settings parsed at planning)."""

    policy: Artifact  # the model to start from; also the frozen reference unless `reference`
    prompts: Artifact
    reward: Optional[RewardSource]
    pretraining: Optional[Artifact]  # text for a PPO-ptx style term, if any
    output_dir: Path  # checkpoints and the final policy go here
    seed: int
    model: ModelConfig = field(default_factory=ModelConfig)  # loading options (dtype, ...)
    reward_model: Optional[Artifact] = None  # a reward-model checkpoint, if one is wired
    hardware: Optional[HardwareConfig] = None
    # Record the rows of data sources the optimizer loads itself (e.g. pretraining text) with
    # `data_report.source(NAME)`; the stage reports them. `prompts` are already loaded and
    # reported by the stage.
    data_report: Optional[DataReport] = None
    # Train adapters instead of full weights (an optimizer that accepts them says so in
    # adapter_problems); None or kind none: full weights.
    adapter: Optional[AdapterConfig] = None
    stage: str = "rl"  # the RL stage's key in the recipe, for config paths in errors
    # The frozen KL reference when it is not the starting policy (an iterated round starts from
    # the previous round's policy and keeps the SFT model as reference); see accepts_reference.
    reference: Optional[Artifact] = None


class Optimizer(Plugin, ABC):
    """Optimizes a policy against a reward source. `needs_reward` says whether it must have one
    (offline methods like DPO learn from comparisons instead)."""

    needs_reward: bool = True

    def uses_pretraining(self) -> bool:
        """Whether this config reads the `pretraining` text (e.g. PPO-ptx with ptx_coef > 0)."""
        return False

    def adapter_problems(self, adapter: AdapterConfig, where: str, params_where: str,
                         hardware: Optional[HardwareConfig] = None) -> list[str]:
        """Problems training with `adapter` (configured at `where`) with this optimizer's params
        (at `params_where`) on `hardware`, each naming its config path and the fix. By default
        an optimizer trains full weights only."""
        if not adapter.enabled:
            return []
        return [f"{where}.kind: the optimizer {type(self).__name__} trains full weights only; "
                f"set {where}.kind=none (an adapter policy input is merged into its base first)."]

    def memory_workload(self, stage: str, reward: Optional["NestedPlugin"] = None
                        ) -> Optional["Workload"]:
        """What the memory planner sizes for the RL stage `stage` with this optimizer and the
        reward source `reward` (framework.memory.specs; None: the planner has no model)."""
        return None

    def uses_reward_model(self) -> bool:
        """Whether this config reads a reward-model checkpoint itself (e.g. to start a critic)."""
        return False

    def accepts_reference(self) -> bool:
        """Whether it can keep a KL reference other than its starting policy (the job's
        `reference`). By default the starting policy is the reference."""
        return False

    def reference_problems(self, adapter: AdapterConfig, where: str, adapter_where: str
                           ) -> list[str]:
        """Problems keeping a reference other than the starting policy (wired at `where`) while
        training with `adapter` (configured at `adapter_where`), each naming the fix."""
        return []

    @abstractmethod
    def train(self, job: PolicyTrainingJob) -> tuple[Artifact, Mapping[str, Any]]:
        """Train; return the final policy artifact and metrics."""
