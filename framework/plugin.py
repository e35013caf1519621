"""What every plugin has in common: a typed config schema, validated strictly."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, ClassVar, Mapping

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from framework.errors import ConfigError


@dataclasses.dataclass
class NoConfig:
    """Schema of a plugin that takes no parameters."""


class Plugin:
    """Base of Stage, RewardSource and Optimizer.

    Subclasses set `Config` to a dataclass; its fields are the plugin's parameters. A config node
    is checked against it strictly: unknown keys and wrong types fail with the config path.
    """

    Config: ClassVar[type] = NoConfig

    def __init__(self, config):
        self.config = config

    @classmethod
    def parse_config(cls, node: Any, where: str):
        """Validate `node` (a mapping) against `cls.Config` and return a Config instance."""
        return parse_dataclass(cls.Config, node, where)


def parse_dataclass(schema: type, node: Any, where: str):
    if node is None:
        node = {}
    if not isinstance(node, (Mapping, DictConfig)):
        raise ConfigError(f"{where}: expected a mapping of parameters, got {node!r}.")
    valid = [f.name for f in dataclasses.fields(schema)]
    unknown = [str(k) for k in node if str(k) not in valid]
    if unknown:  # every one at once, each with its closest match
        problems = []
        for key in unknown:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            problems.append(f"{where}.{key}: not a parameter.{hint} Valid keys: "
                            f"{', '.join(valid) or 'none'}.")
        raise ConfigError(problems)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or ""
        # the node the bad key is in: a nested dataclass (e.g. a plugin spec) lists its own keys
        owner = getattr(exc, "object_type", None)
        owner = owner if dataclasses.is_dataclass(owner) else schema
        fields = ", ".join(f.name for f in dataclasses.fields(owner)) or "none"
        msg = str(exc).split("\n")[0]
        raise ConfigError(
            f"{where}{'.' + key if key else ''}: {msg}. Valid keys: "
            f"{fields}."
        ) from None


def check_plugin_class(kind: str, base: type):
    """A registry check: the class implements `base`'s abstract methods and declares a schema."""

    def check(name: str, cls: type, source: str) -> None:
        from framework.artifacts import kind_problems
        from framework.errors import PluginError

        where = f"The {kind} plugin {name!r} from {source}"
        missing = sorted(getattr(cls, "__abstractmethods__", ()))
        if missing:
            raise PluginError(f"{where} does not implement {', '.join(missing)} of {base.__name__}.")
        if not dataclasses.is_dataclass(cls.Config):
            raise PluginError(f"{where}: its Config must be a dataclass, got {cls.Config!r}.")
        declared = [(f"input {port!r}", k) for port, spec in getattr(cls, "inputs", {}).items()
                    for k in spec.kinds]
        declared += [(f"output {out!r}", k) for out, k in getattr(cls, "outputs", {}).items()]
        problems = [p for what, k in declared for p in kind_problems([k], f"{where}: its {what}")]
        if problems:
            raise PluginError(problems[0])

    return check
