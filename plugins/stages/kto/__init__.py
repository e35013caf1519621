from framework_plugins.stages.kto.stage import KTOStage

__all__ = ["KTOStage"]
