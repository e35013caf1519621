"""The `sft` stage: supervised fine-tuning on demonstrations."""

from framework_plugins.stages.sft.stage import SFTStage, SFTStageConfig

__all__ = ["SFTStage", "SFTStageConfig"]
