from framework_plugins.stages.dpo.stage import DPOStage

__all__ = ["DPOStage"]
