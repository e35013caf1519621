"""The registries of the plugin kinds the framework knows."""

from framework.optimizer import Optimizer
from framework.plugin import check_plugin_class
from framework.registry import Registry
from framework.reward_source import RewardSource
from framework.stage import Stage

stages: Registry[Stage] = Registry(
    "stage", "framework.stages", Stage, check_plugin_class("stage", Stage)
)
reward_sources: Registry[RewardSource] = Registry(
    "reward source", "framework.reward_sources", RewardSource, check_plugin_class("reward source", RewardSource)
)
optimizers: Registry[Optimizer] = Registry(
    "optimizer", "framework.optimizers", Optimizer, check_plugin_class("optimizer", Optimizer)
)

ALL = {"stages": stages, "reward_sources": reward_sources, "optimizers": optimizers}
