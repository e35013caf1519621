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
from framework.hardware.config import HardwareConfig
from framework.models.adapters import AdapterConfig, parse_adapter, stage_adapter
from framework.models.config import ModelConfig
from framework.models.embedded import check_embedded
from framework.models.loading import DTYPES, check_local_config, check_weights_format
from framework.pipeline.rounds import expand_rounds
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
    adapter: AdapterConfig | None = None  # for a stage that trains weights (see Stage.adapter_kinds)
    # run-wide settings, parsed once here and handed on typed (framework.stage.StageContext)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    hardware: HardwareConfig | None = None


def model_artifact(model_cfg: Any) -> Artifact:
    meta = OmegaConf.to_container(model_cfg, resolve=True) if isinstance(model_cfg, DictConfig) else dataclasses.asdict(model_cfg)
    return Artifact(MODEL, meta["name_or_path"], meta)


def build_plan(cfg: DictConfig, rows: bool = True) -> list[PlannedStage]:
    """The checked plan. `rows=False` skips parsing the data sources' rows (a launched stage
    process: its parent planned the same config)."""
    problems: list[str] = []
    _unknown_keys(cfg, problems)
    try:
        cfg = expand_rounds(cfg)  # rounds.stages -> ordinary stages NAME_1, NAME_2, ...
    except ConfigError as exc:
        raise ConfigError(problems + exc.problems) from None
    sources = _external_sources(cfg, problems, rows)
    hardware = _check_hardware(cfg, problems)
    model_config = _model_config(cfg, problems)
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
        adapter = _adapter(cfg, name, stage, node, hardware, problems)
        problems.extend(stage.wiring_problems(dict(node.inputs), adapter, where))
        if len(inputs) == len([k for k in node.inputs if k in stage.accepted_inputs()]):
            try:
                known = {k: v for k, v in inputs.items() if not isinstance(v, OutputRef)}
                stage.check(known, where)
            except ConfigError as exc:
                problems.extend(exc.problems)  # each its own line, not one nested list
            except FrameworkError as exc:
                problems.append(str(exc))
        plan.append(PlannedStage(name, node.plugin, stage, _hashed_node(node, adapter), inputs,
                                 adapter, model_config, hardware))
    if problems:
        raise ConfigError(problems)
    return plan


def _model_config(cfg: DictConfig, problems: list[str]) -> ModelConfig:
    from framework.plugin import parse_dataclass

    try:
        return parse_dataclass(ModelConfig, cfg.get("model") or {}, "model")
    except ConfigError as exc:
        problems.append(str(exc))
        return ModelConfig()


def _adapter(cfg, name, stage, node, hardware, problems) -> AdapterConfig | None:
    """The stage's adapter (root `adapter` plus `stages.NAME.adapter`), checked against the
    kinds the stage supports; None for a stage that trains no weights."""
    where = f"stages.{name}.adapter"
    raw = node.get("adapter") or {}
    raw = OmegaConf.to_container(raw, resolve=True) if OmegaConf.is_config(raw) else raw
    override = {k: v for k, v in raw.items() if v is not None}
    kinds = type(stage).adapter_kinds
    if not kinds:
        if override:
            problems.append(f"{where}: stage plugin {node.plugin!r} trains no model weights, so "
                            f"adapters do not apply to it; remove {where}.")
        return None
    try:
        root = parse_adapter(cfg.get("adapter") or {}, "adapter")
    except ConfigError as exc:
        if str(exc) not in problems:  # reported once, not once per stage
            problems.append(str(exc))
        return None
    try:
        adapter = stage_adapter(root, override, where)
    except ConfigError as exc:
        problems.append(str(exc))
        return None
    if adapter.kind not in kinds:
        at = f"{where}.kind" if "kind" in override else "adapter"
        problems.append(
            f"{at}: stage plugin {node.plugin!r} cannot train with adapter kind "
            f"{adapter.kind!r} (it supports: {', '.join(kinds)}). Set {where}.kind="
            f"{kinds[0]} to use {kinds[0]!r} for this stage only."
        )
    else:
        problems.extend(stage.adapter_problems(adapter, where, hardware))
    return adapter


def _hashed_node(node, adapter: AdapterConfig | None) -> dict:
    """The stage node as hashed: with the effective adapter when one is on, so that changing
    the root `adapter` re-runs the stages it applies to (and full fine-tuning hashes as before)."""
    data = OmegaConf.to_container(node, resolve=True)
    data.pop("adapter", None)
    if adapter is not None and adapter.enabled:
        data["adapter"] = adapter.to_json()
    return data


def _check_hardware(cfg: DictConfig, problems: list[str]):
    """The `hardware` profile (a HardwareConfig; None if absent or unreadable), checked on this
    machine: devices, processes, precision, libraries."""
    from framework.hardware import as_hardware, hardware_problems

    try:
        hardware = as_hardware(cfg.get("hardware"))
    except FrameworkError as exc:
        problems.append(str(exc))
        return None
    if hardware is not None:
        problems.extend(hardware_problems(hardware))
    return hardware


def _unknown_keys(cfg: DictConfig, problems: list[str]) -> None:
    """Keys added with Hydra's `++` skip the schema check of composition; a typo there would be
    ignored silently (`++model.dtyp=bfloat16`). `adapter` and `hardware` check their own."""
    from framework.pipeline.schema import (
        RootConfig, RoundsConfig, RoundsSummary, StageNode, StageTemplate)

    def check(node, schema, where: str) -> None:
        if not isinstance(node, DictConfig):
            return
        valid = [f.name for f in dataclasses.fields(schema)]
        for key in node:
            if key not in valid:
                close = difflib.get_close_matches(str(key), valid, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                problems.append(f"{where}{key}: not a setting.{hint} Valid keys: "
                                f"{', '.join(valid)}.")

    check(cfg, RootConfig, "")
    check(cfg.get("model"), ModelConfig, "model.")
    for name, node in (cfg.get("data") or {}).items():
        check(node, DataSourceConfig, f"data.{name}.")
    for name, node in (cfg.get("stages") or {}).items():
        check(node, StageNode, f"stages.{name}.")
    rounds = cfg.get("rounds")
    check(rounds, RoundsConfig, "rounds.")
    if isinstance(rounds, DictConfig):
        check(rounds.get("summary"), RoundsSummary, "rounds.summary.")
        for name, node in (rounds.get("stages") or {}).items():
            check(node, StageTemplate, f"rounds.stages.{name}.")


def _external_sources(cfg: DictConfig, problems: list[str], rows: bool = True) -> dict[str, Artifact]:
    from framework.data.sources import check_rows, check_source

    sources: dict[str, Artifact | None] = {"model": model_artifact(cfg.model)}
    try:
        check_embedded(cfg.model.name_or_path, "model.name_or_path")
    except ConfigError as exc:
        problems.append(str(exc))
    try:
        check_local_config(cfg.model.name_or_path, "model.name_or_path")
        check_weights_format(cfg.model.name_or_path, cfg.model, "model.name_or_path")
        _check_hub(cfg.model.name_or_path, "model", cfg.model.revision, "model.name_or_path")
    except ConfigError as exc:
        problems.append(str(exc))
    if cfg.model.dtype not in DTYPES:
        problems.append(f"model.dtype: {cfg.model.dtype!r} is not one of {', '.join(DTYPES)}.")
    known = {f.name for f in dataclasses.fields(DataSourceConfig)}
    for name, node in (cfg.get("data") or {}).items():
        fields = OmegaConf.to_container(node, resolve=True)
        source = DataSourceConfig(**{k: v for k, v in fields.items() if k in known})
        try:
            check_source(source, f"data.{name}")
            _check_hub(source.path, "dataset", source.revision, f"data.{name}.path")
            if rows:
                check_rows(source, f"data.{name}")  # every row parsed, before any stage runs
        except FrameworkError as exc:
            problems.append(str(exc))
            sources[f"data.{name}"] = None  # reported here; its consumers are not re-checked
            continue
        sources[f"data.{name}"] = data_artifact(source)
    return sources


def _check_hub(location: str, repo_type: str, revision, where: str) -> None:
    """A hub id is cached or the hub reachable, found here rather than after a minute of the
    hub client's retries when a stage loads it."""
    from framework.common.hub import REPO_ID, check_reachable
    from framework.data.sources import is_local

    if REPO_ID.match(location) and not is_local(location):
        check_reachable(location, repo_type, revision, where)


def _wire(name, stage, wiring, sources, produced, all_stages, problems) -> dict[str, Artifact | OutputRef]:
    where = f"stages.{name}.inputs"
    ports, required, accepted = stage.input_ports(), stage.required_inputs(), stage.accepted_inputs()
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

