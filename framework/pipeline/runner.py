"""Run a planned pipeline stage by stage in a run directory, reusing finished stages."""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from pathlib import Path
from typing import Callable, Optional

from omegaconf import DictConfig, OmegaConf

from framework.artifacts import Artifact
from framework.errors import FrameworkError, TrainingInterrupted, WaitingForLabels
from framework.hardware import as_hardware, launches
from framework.pipeline.large_models import apply_large_model_adapter
from framework.common import peak_memory, signals
from framework.common.files import write_text_atomic
from framework.pipeline.manifest import (
    artifact_checksums, config_hash, input_fingerprints, read_record, reuse,
    write_manifest, write_summary)
from framework.common.redact import redacted_config, remember_secrets
from framework.pipeline.plan import OutputRef, PlannedStage, build_plan
from framework.pipeline.rounds import log_rounds, metric_paths
from framework.pipeline.run_lock import run_dir_lock
from framework.stage import StageContext, StageResult

log = logging.getLogger("framework")


def run_pipeline(cfg: DictConfig, run_dir: Path, recipe: str,
                 on_start: Optional[Callable[[], None]] = None) -> dict:
    """Check the whole recipe, then run its stages in order. Returns the summary. `on_start`
    runs once the plan passed and the run directory is locked (the CLI writes .hydra/ then)."""
    run_dir = Path(run_dir)
    apply_large_model_adapter(cfg)  # e.g. single_gpu: QLoRA for a 7B-class model
    remember_secrets(cfg)  # redacted from logs, manifests and the summary wherever they appear
    plan = build_plan(cfg)  # raises ConfigError before anything heavy happens
    run_dir.mkdir(parents=True, exist_ok=True)
    leader = _leads(cfg)
    # machine 0 keeps the books; the other machines of a multi-machine run share the folder
    with run_dir_lock(run_dir) if leader else contextlib.nullcontext():
        if leader and on_start is not None:
            on_start()
        return _run_plan(plan, cfg, run_dir, recipe, leader)


def _run_plan(plan: list[PlannedStage], cfg: DictConfig, run_dir: Path, recipe: str,
              leader: bool) -> dict:
    # resolved (the values used), with secrets redacted: see framework.common.redact
    if leader:
        write_text_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(redacted_config(cfg)))
    summary = {"recipe": recipe, "stages": {}}
    if cfg.get("rounds") and cfg.rounds.get("stages"):  # summary.json's per-round table
        summary["round_metrics"] = metric_paths(cfg.rounds)
    produced: dict[str, dict[str, Artifact]] = {}
    previous_hash = ""
    upstream_ran = False  # once a stage runs, its outputs are new: every later stage re-runs
    with signals.stop_on_signals():  # SIGINT/SIGTERM: checkpoint, then stop (see signals.py)
        for i, planned in enumerate(plan):
            inputs = {k: _concrete(v, produced) for k, v in planned.inputs.items()}
            external = {k for k, v in planned.inputs.items() if not isinstance(v, OutputRef)}
            record = read_record(run_dir / planned.name)  # the stage's last attempt, if any
            fingerprints = input_fingerprints(inputs, external, record)
            digest = config_hash(planned.node, {k: a.to_json() for k, a in inputs.items()},
                                 previous_hash, cfg.seed,
                                 {k: f["digest"] for k, f in fingerprints.items()})
            entry = _run_or_reuse(planned, inputs, digest, fingerprints, record, cfg, run_dir,
                                  summary, upstream_ran, leader)
            upstream_ran = upstream_ran or entry["status"] == "done"
            produced[planned.name] = entry["artifacts"]
            previous_hash = digest
            name = signals.stop_requested()
            if name and i + 1 < len(plan):  # the signal came while a stage was finishing
                raise TrainingInterrupted(
                    f"stopped by {name} after stage {planned.name!r} finished; "
                    f"{plan[i + 1].name!r} and later stages did not start.", signal_name=name)
    if "round_metrics" in summary:
        log_rounds(summary)
    return summary


def _run_or_reuse(planned: PlannedStage, inputs, digest, fingerprints, previous: dict, cfg,
                  run_dir: Path, summary, upstream_ran: bool, leader: bool = True) -> dict:
    stage_dir = run_dir / planned.name
    write_manifest, write_summary = _bookkeeping(leader)
    reusable, why_not = (None, None) if upstream_ran else reuse(previous, run_dir, digest,
                                                                 fingerprints)
    if why_not:
        log.warning("stage %s: %s; running it again, and every stage after it", planned.name,
                    why_not)
    if reusable is not None:
        log.info("stage %s: already done with the same config, skipped", planned.name)
        entry = {"status": "skipped", "seconds": 0.0, "metrics": reusable["metrics"],
                 "artifacts": reusable["artifacts"],
                 # what the reused attempt cost, for reports that compare runs
                 "when_run": {"seconds": round(reusable.get("seconds", 0.0), 2),
                              "peak_rss_mib": reusable.get("peak_rss_mib")}}
        summary["stages"][planned.name] = entry
        write_summary(run_dir, summary)
        return entry

    if leader:
        _drop_stale_checkpoints(stage_dir, previous.get("config_hash"), digest)
    log.info("stage %s (%s): running", planned.name, planned.plugin)
    ctx = stage_context(planned, run_dir, cfg)
    stage_dir.mkdir(parents=True, exist_ok=True)
    record = {"stage": planned.name, "plugin": planned.plugin, "config_hash": digest,
              "inputs": {k: a.to_json() for k, a in inputs.items()},
              "input_fingerprints": fingerprints, "status": "running", "metrics": {},
              "artifacts": {}}
    write_manifest(stage_dir, run_dir, record)
    start = time.monotonic()
    try:
        with peak_memory.measure() as memory:
            result = _run_stage(planned, inputs, ctx, cfg)
        _check_result(planned, result)
    except BaseException as exc:
        seconds = time.monotonic() - start
        # a signal's clean stop (or a second signal's hard one) can be resumed, unlike a
        # failure; a label stage waiting for people continues when they have labeled
        status = ("waiting_for_labels" if isinstance(exc, WaitingForLabels)
                  else "interrupted" if isinstance(exc, (TrainingInterrupted, KeyboardInterrupt))
                  else "failed")
        record.update(status=status, seconds=seconds, error=f"{type(exc).__name__}: {exc}")
        write_manifest(stage_dir, run_dir, record)
        summary["stages"][planned.name] = {"status": status, "seconds": seconds,
                                           "metrics": {}, "artifacts": {},
                                           "error": record["error"]}
        write_summary(run_dir, summary)
        raise
    seconds = time.monotonic() - start
    record.update(status="done", seconds=seconds, peak_rss_mib=memory["peak_rss_mib"],
                  metrics=result.metrics,
                  artifacts=result.artifacts,
                  artifact_checksums=artifact_checksums(result.artifacts) if leader else {})
    write_manifest(stage_dir, run_dir, record)
    entry = {"status": "done", "seconds": round(seconds, 2),
             "peak_rss_mib": memory["peak_rss_mib"], "metrics": result.metrics,
             "artifacts": result.artifacts}
    summary["stages"][planned.name] = entry
    write_summary(run_dir, summary)
    log.info("stage %s: done in %.1f s, metrics %s", planned.name, seconds, result.metrics)
    return entry


def stage_context(planned: PlannedStage, run_dir: Path, cfg) -> StageContext:
    """What a stage's run() gets besides its inputs (also built by each launched process)."""
    return StageContext(name=planned.name, output_dir=Path(run_dir) / planned.name,
                        run_dir=Path(run_dir), seed=cfg.seed, model=planned.model,
                        hardware=planned.hardware, adapter=planned.adapter)


def _run_stage(planned: PlannedStage, inputs, ctx: StageContext, cfg) -> StageResult:
    """In this process, or under a distributed hardware profile in the processes that
    `accelerate launch` starts (framework/pipeline/launch.py)."""
    if launches(planned.hardware) and type(planned.stage).launched:
        from framework.pipeline.launch import launch_stage

        return launch_stage(planned.name, inputs, ctx, cfg, planned.hardware)
    return planned.stage.run(inputs, ctx)


def _leads(cfg) -> bool:
    """Whether this process keeps the run's books (config.yaml, manifests, summary.json): in a
    run over several machines, one `python -m framework` runs on each, and machine 0's does."""
    hardware = as_hardware(cfg.get("hardware"))
    return hardware is None or hardware.machine_rank == 0


def _bookkeeping(leader: bool):
    """(write_manifest, write_summary), or two no-ops for a machine that does not lead."""
    if leader:
        return write_manifest, write_summary
    return (lambda *args: None), (lambda *args: None)


def _drop_stale_checkpoints(stage_dir: Path, previous: Optional[str], digest: str) -> None:
    """Checkpoints (`<stage>/checkpoints`, where stages keep resumable state) left by an attempt
    with another config or other inputs must not be resumed: the stage starts over."""
    checkpoints = stage_dir / "checkpoints"
    if previous is not None and previous != digest and checkpoints.exists():
        log.warning("stage %s: its config or inputs changed since %s was written; starting over",
                    stage_dir.name, checkpoints)
        shutil.rmtree(checkpoints)


def _concrete(value, produced) -> Artifact:
    if isinstance(value, OutputRef):
        return produced[value.stage][value.output]
    return value


def _check_result(planned: PlannedStage, result: StageResult) -> None:
    declared = dict(type(planned.stage).outputs)
    got = {k: a.kind for k, a in result.artifacts.items()}
    if got != declared:
        raise FrameworkError(
            f"stage {planned.name!r} ({planned.plugin}) returned artifacts {got}, but declares "
            f"outputs {declared}. A stage must return exactly its declared outputs."
        )
