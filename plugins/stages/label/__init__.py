from framework_plugins.stages.label.stage import LabelStage

__all__ = ["LabelStage"]
