"""The Optimizer interface: a policy-optimization algorithm (PPO, GRPO, RLOO, ...)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from framework.artifacts import Artifact
from framework.plugin import Plugin
from framework.reward_source import RewardSource


@dataclass
class PolicyTrainingJob:
    """Everything an optimizer gets from the RL stage."""

    policy: Artifact  # the model to start from; also the frozen reference
    prompts: Artifact
    reward: Optional[RewardSource]
    pretraining: Optional[Artifact]  # text for a PPO-ptx style term, if any
    output_dir: Any  # pathlib.Path: checkpoints and the final policy go here
    seed: int
    model: Any  # the `model` config node
    reward_model: Optional[Artifact] = None  # a reward-model checkpoint, if one is wired
    hardware: Any = None
    # framework.data.report.DataReport: record the rows of data sources the optimizer loads
    # itself (e.g. pretraining text) with `data_report.source(NAME)`; the stage reports them.
    # `prompts` are already loaded and reported by the stage.
    data_report: Any = None
    # framework.models.adapters.AdapterConfig: train adapters instead of full weights (an
    # optimizer that accepts it says so in adapter_problems); None or kind none: full weights.
    adapter: Any = None


class Optimizer(Plugin, ABC):
    """Optimizes a policy against a reward source. `needs_reward` says whether it must have one
    (offline methods like DPO learn from comparisons instead)."""

    needs_reward: bool = True

    def uses_pretraining(self) -> bool:
        """Whether this config reads the `pretraining` text (e.g. PPO-ptx with ptx_coef > 0)."""
        return False

    def adapter_problems(self, adapter: Any, where: str, params_where: str,
                         hardware: Any = None) -> list[str]:
        """Problems training with `adapter` (framework.models.adapters.AdapterConfig, configured
        at `where`) with this optimizer's params (at `params_where`) on `hardware` (a
        HardwareConfig or None), each naming its config path and the fix. By default an
        optimizer trains full weights only."""
        if not adapter.enabled:
            return []
        return [f"{where}.kind: the optimizer {type(self).__name__} trains full weights only; "
                f"set {where}.kind=none (an adapter policy input is merged into its base first)."]

    def uses_reward_model(self) -> bool:
        """Whether this config reads a reward-model checkpoint itself (e.g. to start a critic)."""
        return False

    @abstractmethod
    def train(self, job: PolicyTrainingJob) -> tuple[Artifact, Mapping[str, Any]]:
        """Train; return the final policy artifact and metrics."""
