from framework_plugins.stages.collect.stage import CollectStage

__all__ = ["CollectStage"]
