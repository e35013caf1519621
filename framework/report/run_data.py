"""A run directory as the report reads it: summary.json, each stage's manifest and training log,
the evaluate stage's table and samples, and the overrides that tell runs apart."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from framework.common import training_log
from framework.common.files import read_json
from framework.errors import FrameworkError
from framework.pipeline.manifest import read_record

SUMMARY = "summary.json"


@dataclass
class StageData:
    name: str
    plugin: str
    status: str
    seconds: float  # a reused (skipped) stage: what it took when it ran
    peak_rss_mib: Optional[float]
    metrics: dict
    log: list[dict]  # training_log.jsonl, step by step
    reused: bool = False


@dataclass
class Evaluation:
    stage: str
    metrics: dict  # the evaluate stage's table, as in summary.json
    samples: list[dict]  # samples.jsonl: one row per (policy, prompt, sample)


@dataclass
class RunData:
    path: Path
    recipe: str
    summary: dict
    stages: dict[str, StageData]
    evaluations: list[Evaluation]
    overrides: list[str] = field(default_factory=list)  # the command line's, not Hydra's own
    label: str = ""


def load_run(path: Path) -> RunData:
    path = Path(path)
    summary = read_json(path / SUMMARY)
    if not isinstance(summary, dict) or not isinstance(summary.get("stages"), dict):
        raise FrameworkError(f"{path / SUMMARY}: not a run's summary (no 'stages' mapping); "
                             f"name a run directory that `python -m framework` wrote.")
    stages, evaluations = {}, []
    for name, entry in summary["stages"].items():
        folder = path / name
        when_run = entry.get("when_run") or {}
        stages[name] = StageData(
            name=name, plugin=read_record(folder).get("plugin", "?"),
            status=entry.get("status", "?"),
            seconds=float(when_run.get("seconds", entry.get("seconds", 0.0))),
            peak_rss_mib=when_run.get("peak_rss_mib", entry.get("peak_rss_mib")),
            metrics=entry.get("metrics") or {}, log=_log(folder),
            reused=entry.get("status") == "skipped")
        if (folder / "evaluation.json").is_file() and "policies" in stages[name].metrics:
            evaluations.append(Evaluation(name, stages[name].metrics, _samples(folder)))
    return RunData(path=path, recipe=summary.get("recipe", "?"), summary=summary, stages=stages,
                   evaluations=evaluations, overrides=_overrides(path))


def find_runs(paths: list[Path]) -> list[RunData]:
    """Each path is a run directory (it holds summary.json) or a sweep directory (`-m` runs:
    its subfolders hold them, in job order). Labels tell the runs apart by what their
    overrides do not share, e.g. "seed=2"."""
    runs = []
    for path in map(Path, paths):
        if not path.exists():
            raise FrameworkError(f"report: {path} does not exist; name a run directory (it "
                                 f"holds {SUMMARY}) or a sweep directory of `-m` runs.")
        if (path / SUMMARY).is_file():
            runs.append(load_run(path))
            continue
        jobs = sorted((p for p in path.iterdir() if (p / SUMMARY).is_file()),
                      key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0,
                                     p.name))
        if not jobs:
            raise FrameworkError(f"report: {path} holds no {SUMMARY}, nor do its subfolders; "
                                 f"name a run directory, or the sweep directory of a `-m` run.")
        runs.extend(load_run(job) for job in jobs)
    _label(runs)
    return runs


def _label(runs: list[RunData]) -> None:
    shared = set.intersection(*(set(r.overrides) for r in runs)) if runs else set()
    for run in runs:
        own = [o for o in run.overrides if o not in shared]
        run.label = ", ".join(own) if own else run.path.name
    labels = [r.label for r in runs]
    for run in runs:
        if labels.count(run.label) > 1:  # e.g. two sweeps' job 0
            run.label = f"{run.path.parent.name}/{run.path.name}"


def _log(folder: Path) -> list[dict]:
    try:
        return training_log.read(folder)
    except (OSError, json.JSONDecodeError) as exc:
        raise FrameworkError(f"{folder / training_log.FILE}: unreadable ({exc}); the stage's "
                             f"curves cannot be drawn. Delete the file to report without them."
                             ) from None


def _samples(folder: Path) -> list[dict]:
    path = folder / "samples.jsonl"
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _overrides(path: Path) -> list[str]:
    """The run's command-line overrides from .hydra/overrides.yaml, less the run directory."""
    file = path / ".hydra" / "overrides.yaml"
    if not file.is_file():
        return []
    loaded: Any = yaml.safe_load(file.read_text(encoding="utf-8")) or []
    return [str(o) for o in loaded if not str(o).startswith("hydra.")]
