"""Run a planned pipeline stage by stage in a run directory, reusing finished stages."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from framework.artifacts import Artifact
from framework.errors import FrameworkError
from framework.pipeline.files import write_text_atomic
from framework.pipeline.manifest import config_hash, read_reusable, write_manifest, write_summary
from framework.pipeline.plan import OutputRef, PlannedStage, build_plan
from framework.stage import StageContext, StageResult

log = logging.getLogger("framework")


def run_pipeline(cfg: DictConfig, run_dir: Path, recipe: str) -> dict:
    """Check the whole recipe, then run its stages in order. Returns the summary."""
    run_dir = Path(run_dir)
    plan = build_plan(cfg)  # raises ConfigError before anything heavy happens
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    summary = {"recipe": recipe, "stages": {}}
    produced: dict[str, dict[str, Artifact]] = {}
    previous_hash = ""
    upstream_ran = False  # once a stage runs, its outputs are new: every later stage re-runs
    for planned in plan:
        inputs = {k: _concrete(v, produced) for k, v in planned.inputs.items()}
        digest = config_hash(planned.node, {k: a.to_json() for k, a in inputs.items()},
                             previous_hash, cfg.seed)
        entry = _run_or_reuse(planned, inputs, digest, cfg, run_dir, summary, upstream_ran)
        upstream_ran = upstream_ran or entry["status"] == "done"
        produced[planned.name] = entry["artifacts"]
        previous_hash = digest
    return summary


def _run_or_reuse(planned: PlannedStage, inputs, digest, cfg, run_dir: Path, summary,
                  upstream_ran: bool) -> dict:
    stage_dir = run_dir / planned.name
    reusable = None if upstream_ran else read_reusable(stage_dir, run_dir, digest)
    if reusable is not None:
        log.info("stage %s: already done with the same config, skipped", planned.name)
        entry = {"status": "skipped", "seconds": 0.0, "metrics": reusable["metrics"],
                 "artifacts": reusable["artifacts"]}
        summary["stages"][planned.name] = entry
        write_summary(run_dir, summary)
        return entry

    log.info("stage %s (%s): running", planned.name, planned.plugin)
    ctx = StageContext(name=planned.name, output_dir=stage_dir, run_dir=run_dir, seed=cfg.seed,
                       model=cfg.model, hardware=cfg.get("hardware"))
    stage_dir.mkdir(parents=True, exist_ok=True)
    record = {"stage": planned.name, "plugin": planned.plugin, "config_hash": digest,
              "inputs": {k: a.to_json() for k, a in inputs.items()}, "status": "running",
              "metrics": {}, "artifacts": {}}
    write_manifest(stage_dir, run_dir, record)
    start = time.monotonic()
    try:
        result = planned.stage.run(inputs, ctx)
        _check_result(planned, result)
    except BaseException as exc:
        seconds = time.monotonic() - start
        record.update(status="failed", seconds=seconds, error=f"{type(exc).__name__}: {exc}")
        write_manifest(stage_dir, run_dir, record)
        summary["stages"][planned.name] = {"status": "failed", "seconds": seconds,
                                           "metrics": {}, "artifacts": {},
                                           "error": record["error"]}
        write_summary(run_dir, summary)
        raise
    seconds = time.monotonic() - start
    record.update(status="done", seconds=seconds, metrics=result.metrics,
                  artifacts=result.artifacts)
    write_manifest(stage_dir, run_dir, record)
    entry = {"status": "done", "seconds": round(seconds, 2), "metrics": result.metrics,
             "artifacts": result.artifacts}
    summary["stages"][planned.name] = entry
    write_summary(run_dir, summary)
    log.info("stage %s: done in %.1f s, metrics %s", planned.name, seconds, result.metrics)
    return entry


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
