"""The registries of the plugin kinds the framework knows."""

from typing import Any, Callable

from framework.labeling.labeler import Labeler
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

labelers: Registry[Labeler] = Registry(
    "labeler", "framework.labelers", Labeler, check_plugin_class("labeler", Labeler)
)


def _check_function(name: str, obj: Any, source: str) -> None:
    from framework.errors import PluginError

    if not callable(obj) or isinstance(obj, type):
        raise PluginError(f"The reward function {name!r} from {source} is {obj!r}, not a "
                          f"function f(prompt, response) -> float.")


# Functions the `function` reward source can name by a short name instead of a module path.
reward_functions: Registry[Callable] = Registry("reward function", "framework.reward_functions",
                                                check=_check_function)

ALL = {"stages": stages, "reward_sources": reward_sources, "optimizers": optimizers,
       "labelers": labelers, "reward_functions": reward_functions}
