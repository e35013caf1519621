"""Reward-model stage plugin (InstructGPT step 2). See README.md."""

from framework_plugins.reward_model.stage import RewardModelConfig, RewardModelStage

__all__ = ["RewardModelConfig", "RewardModelStage"]
