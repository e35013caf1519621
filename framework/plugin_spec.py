"""Plugins inside a plugin's config: `{name, params, inputs}` nodes, parsed and wired centrally.

A stage (the RL stage's optimizer and reward sources) or a plugin that holds others (an
ensemble of reward sources) names them with a spec::

    reward:
      name: reward_model            # a registered name or "package.module:Class"
      params: {normalize: true}     # checked against the plugin's Config, with config paths
      inputs: {reward_model: rm_a}  # the plugin's input port -> an input of the enclosing stage

`parse_spec` checks the name and the params during planning (nothing is built);
`NestedPlugin.instance` builds the plugin on first use. A port not named in `inputs` is fed by
the stage input of the same name, so one `reward_model` stage input reaches every source that
declares a `reward_model` port. `wired_ports` lists what a tree of nested plugins needs from
the enclosing stage; `bind` hands each plugin its artifacts before setup.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Generic, Mapping, Optional, TypeVar

from omegaconf import DictConfig, OmegaConf

from framework.artifacts import Artifact, Port, kind_problems
from framework.errors import ConfigError, FrameworkError
from framework.registry import Registry

T = TypeVar("T")


@dataclass
class PluginSpec:
    name: str = ""  # a registered plugin name, or "package.module:Class"
    params: Dict[str, Any] = field(default_factory=dict)
    # the plugin's input port -> the enclosing stage's input that feeds it (default: same name)
    inputs: Dict[str, str] = field(default_factory=dict)


@dataclass
class NestedPlugin(Generic[T]):
    """A parsed spec: the plugin's class, typed config and wiring. Built on first use."""

    where: str  # its config path, e.g. "stages.rl.params.reward"
    name: str
    cls: type
    config: Any
    inputs: Dict[str, str]
    artifacts: Dict[str, Artifact] = field(default_factory=dict)  # set by bind()
    _instance: Optional[T] = field(default=None, repr=False)

    @property
    def instance(self) -> T:
        if self._instance is None:
            self._instance = self.cls(self.config)
        return self._instance

    def children(self) -> Mapping[str, "NestedPlugin"]:
        """The plugins this one holds (an ensemble's members), by their config key."""
        nested = getattr(self.instance, "nested", None)
        return nested() if callable(nested) else {}


def parse_spec(registry: Registry, node: Any, where: str) -> NestedPlugin:
    """Check a spec's name, params (by the plugin's schema) and wiring keys; build nothing."""
    if isinstance(node, NestedPlugin):
        return node
    if isinstance(node, PluginSpec):
        node = dataclasses.asdict(node)
    if isinstance(node, str):  # shorthand: just a name
        node = {"name": node}
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)
    if not isinstance(node, Mapping):
        raise ConfigError(f"{where}: expected {{name: ..., params: {{...}}}}, got {node!r}.")
    unknown = sorted(set(node) - {f.name for f in dataclasses.fields(PluginSpec)})
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: not a setting of a plugin spec. Valid keys: "
                          f"name, params, inputs.")
    name = node.get("name") or ""
    if not name:
        raise ConfigError(f"{where}.name: empty; name a registered {registry.kind} plugin "
                          f"({', '.join(registry.names())}) or 'package.module:Class'.")
    try:
        cls = registry.get(name)
    except FrameworkError as exc:
        raise ConfigError(f"{where}.name: {exc}") from None
    inputs = dict(node.get("inputs") or {})
    ports = getattr(cls, "inputs", {})
    bad = [k for k in inputs if k not in ports]
    if bad:
        raise ConfigError(f"{where}.inputs.{bad[0]}: the {registry.kind} {name!r} has no input "
                          f"{bad[0]!r}; its inputs are: {', '.join(ports) or 'none'}.")
    for port, target in inputs.items():
        if not isinstance(target, str) or not target:
            raise ConfigError(f"{where}.inputs.{port}: name an input of the enclosing stage "
                              f"(a string), got {target!r}.")
    config = cls.parse_config(node.get("params") or {}, f"{where}.params")
    return NestedPlugin(where, name, cls, config, inputs)


@dataclass(frozen=True)
class WiredPort:
    """One port of a nested plugin and the stage input that feeds it."""

    where: str  # the nested plugin's config path
    port: str
    spec: Port
    stage_input: str


def wired_ports(nested: NestedPlugin) -> list[WiredPort]:
    """Every port of `nested` and of the plugins it holds, with the stage input feeding each."""
    out = [WiredPort(nested.where, port, spec, nested.inputs.get(port, port))
           for port, spec in getattr(nested.cls, "inputs", {}).items()]
    for child in nested.children().values():
        out += wired_ports(child)
    return out


def stage_ports(trees: list[NestedPlugin], fixed: Mapping[str, Port]) -> tuple[dict[str, Port], list[str]]:
    """The enclosing stage's input ports: `fixed` plus one per stage input the trees name, its
    kinds those every port it feeds accepts, required if any requires it. Also the problems
    (unknown kinds, ports that no one artifact can feed)."""
    ports: dict[str, Port] = dict(fixed)
    fed_by: dict[str, list[WiredPort]] = {}
    problems: list[str] = []
    for tree in trees:
        for wired in wired_ports(tree):
            problems += kind_problems(wired.spec.kinds, f"{wired.where}: its input {wired.port!r}")
            fed_by.setdefault(wired.stage_input, []).append(wired)
    for name, wireds in fed_by.items():
        kinds = list(ports[name].kinds) if name in ports else list(wireds[0].spec.kinds)
        required = ports[name].required if name in ports else False
        for wired in wireds:
            kinds = [k for k in kinds if k in wired.spec.kinds]
            required = required or wired.spec.required
        if not kinds:
            users = "; ".join(f"{w.where} ({w.port}: {', '.join(w.spec.kinds)})" for w in wireds)
            problems.append(f"stage input {name!r} feeds ports that accept no common artifact "
                            f"kind: {users}. Wire them to separate stage inputs with "
                            f"`inputs: {{PORT: OTHER_NAME}}` in their specs.")
            continue
        docs = "; ".join(sorted({w.spec.doc for w in wireds if w.spec.doc}))
        ports[name] = Port(tuple(kinds), required, docs or (ports[name].doc if name in ports else ""))
    return ports, problems


def bind(nested: NestedPlugin, stage_inputs: Mapping[str, Artifact]) -> None:
    """Give `nested` and every plugin it holds the artifacts its ports are wired to."""
    nested.artifacts = {port: stage_inputs[nested.inputs.get(port, port)]
                        for port in getattr(nested.cls, "inputs", {})
                        if nested.inputs.get(port, port) in stage_inputs}
    for child in nested.children().values():
        bind(child, stage_inputs)
