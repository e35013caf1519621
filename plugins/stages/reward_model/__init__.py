"""Reward-model stage plugin (InstructGPT step 2). See README.md."""

from framework_plugins.stages.reward_model.stage import RewardModelStage

__all__ = ["RewardModelStage"]
