"""Planning: check a whole recipe before any weights load, and wire stage inputs to artifacts.

Checked here: plugin names, each plugin's parameters against its schema, every input wired to
the `model`, a `data.NAME` source or an earlier stage's output of an accepted kind, required
inputs present, no undeclared inputs, and the plugin's own `check()`. All problems are reported
together, each with its config path.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from framework import plugins
from framework.artifacts import MODEL, Artifact
from framework.data.config import DataSourceConfig, data_artifact
from framework.errors import ConfigError, FrameworkError
from framework.models.embedded import check_embedded
from framework.models.loading import DTYPES
from framework.stage import Stage


@dataclass(frozen=True)
class OutputRef:
    """An input wired to an earlier stage's output, known only once that stage has run."""

    stage: str
    output: str
    kind: str


@dataclass
class PlannedStage:
    name: str
    plugin: str
    stage: Stage
    node: dict  # the resolved stage node, hashed to decide re-runs
    inputs: dict[str, Artifact | OutputRef]


def model_artifact(model_cfg: Any) -> Artifact:
    meta = OmegaConf.to_container(model_cfg, resolve=True) if isinstance(model_cfg, DictConfig) else dataclasses.asdict(model_cfg)
    return Artifact(MODEL, meta["name_or_path"], meta)


def build_plan(cfg: DictConfig) -> list[PlannedStage]:
    problems: list[str] = []
    sources = _external_sources(cfg, problems)
    produced: dict[str, dict[str, str]] = {}  # stage -> output -> kind
    all_stages = list(cfg.get("stages") or {})
    plan: list[PlannedStage] = []
    if not cfg.get("stages"):
        problems.append("stages: the recipe has no stages. Select a recipe with +recipe=NAME "
                        "(see `python -m framework list`).")
    for name, node in (cfg.get("stages") or {}).items():
        where = f"stages.{name}"
        try:
            cls = plugins.stages.get(node.plugin)
        except FrameworkError as exc:
            problems.append(f"{where}: {exc}")
            produced[name] = None  # unknown outputs: do not report its consumers as well
            continue
        produced_before = dict(produced)
        produced[name] = dict(cls.outputs)
        try:
            stage = cls(cls.parse_config(node.params, f"{where}.params"))
        except FrameworkError as exc:
            problems.append(str(exc))
            continue
        inputs = _wire(name, stage, node.inputs, sources, produced_before, all_stages, problems)
        if len(inputs) == len([k for k in node.inputs if k in stage.accepted_inputs()]):
            try:
                known = {k: v for k, v in inputs.items() if not isinstance(v, OutputRef)}
                stage.check(known, where)
            except FrameworkError as exc:
                problems.append(str(exc))
        plan.append(PlannedStage(name, node.plugin, stage, OmegaConf.to_container(node, resolve=True), inputs))
    if problems:
        raise ConfigError(problems)
    return plan


def _external_sources(cfg: DictConfig, problems: list[str]) -> dict[str, Artifact]:
    from framework.data.sources import check_source

    sources: dict[str, Artifact | None] = {"model": model_artifact(cfg.model)}
    try:
        check_embedded(cfg.model.name_or_path, "model.name_or_path")
    except ConfigError as exc:
        problems.append(str(exc))
    if cfg.model.dtype not in DTYPES:
        problems.append(f"model.dtype: {cfg.model.dtype!r} is not one of {', '.join(DTYPES)}.")
    for name, node in (cfg.get("data") or {}).items():
        source = DataSourceConfig(**OmegaConf.to_container(node, resolve=True))
        try:
            check_source(source, f"data.{name}")
        except FrameworkError as exc:
            problems.append(str(exc))
            sources[f"data.{name}"] = None  # reported here; its consumers are not re-checked
            continue
        sources[f"data.{name}"] = data_artifact(source)
    return sources


def _wire(name, stage, wiring, sources, produced, all_stages, problems) -> dict[str, Artifact | OutputRef]:
    where = f"stages.{name}.inputs"
    ports, required, accepted = stage.inputs, stage.required_inputs(), stage.accepted_inputs()
    inputs: dict[str, Artifact | OutputRef] = {}
    for port_name in wiring:
        if port_name not in ports:
            problems.append(
                f"{where}.{port_name}: stage plugin {type(stage).__name__} has no input "
                f"{port_name!r}; its inputs are: {', '.join(ports) or 'none'}. Remove or rename it."
            )
        elif port_name not in accepted:
            problems.append(
                f"{where}.{port_name}: wired, but unused with this stage's params "
                f"({stage.unused_input_reason(port_name)}). Remove the input or change the params."
            )
    for port_name, port in ports.items():
        ref = wiring.get(port_name)
        if ref is None:
            if port_name in required:
                problems.append(
                    f"{where}.{port_name}: required input is not wired. Set it to 'model', "
                    f"'data.NAME' or 'STAGE.OUTPUT' giving one of: {', '.join(port.kinds)}."
                )
            continue
        if port_name not in accepted:
            continue
        target = _resolve_ref(ref, name, sources, produced, all_stages, f"{where}.{port_name}", problems)
        if target is None:
            continue
        if target.kind not in port.kinds:
            problems.append(
                f"{where}.{port_name}: {ref!r} is a {target.kind!r} artifact, but this input "
                f"accepts {', '.join(repr(k) for k in port.kinds)}. Wire it to a matching source."
            )
            continue
        inputs[port_name] = target
    return inputs


def _resolve_ref(ref, stage_name, sources, produced, all_stages, where, problems):
    if ref in sources:
        return sources[ref]  # None for a source whose problem is already reported
    head, _, tail = ref.partition(".")
    if head in produced:
        if produced[head] is None:
            return None  # that stage's plugin is unknown, already reported
        if tail not in produced[head]:
            problems.append(
                f"{where}: stage {head!r} has no output {tail!r}; its outputs are: "
                f"{', '.join(produced[head]) or 'none'}."
            )
            return None
        return OutputRef(head, tail, produced[head][tail])
    later = head in all_stages
    choices = sorted(sources) + [f"{s}.{o}" for s, outs in produced.items() for o in outs or ()]
    close = difflib.get_close_matches(ref, choices, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    reason = (f"{head!r} does not run before stage {stage_name!r}" if later
              else f"{ref!r} names no source")
    problems.append(f"{where}: {reason}.{hint} Available here: {', '.join(choices)}.")
    return None

