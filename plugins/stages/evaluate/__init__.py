"""The evaluate stage: policies side by side on held-out prompts (scores, KL, length, diversity,
win rate against the baseline)."""

from framework_plugins.stages.evaluate.stage import EvaluateStage

__all__ = ["EvaluateStage"]
