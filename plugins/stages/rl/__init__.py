"""The RL stage: policy optimization with any Optimizer against any RewardSource."""

from framework_plugins.stages.rl.stage import RLStage

__all__ = ["RLStage"]
