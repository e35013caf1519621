"""`python -m framework report RUN_DIR [RUN_DIR ...] [--out DIR] [--samples N]`.

One run directory: the report goes into RUN_DIR/report/. A sweep directory (`-m`) or several
run directories: one report compares them (a table, overlaid curves), into --out, by default
the sweep directory's report/ folder."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from framework.common.files import write_text_atomic
from framework.errors import FrameworkError

log = logging.getLogger("framework")
PAGE = "report.html"


def write_report(paths: Sequence[Path], out: Optional[Path] = None, samples: int = 8) -> Path:
    """Write report.html and its PNGs; returns the HTML file."""
    from framework.report import curves, html, plots
    from framework.report.run_data import find_runs

    paths = [Path(p) for p in paths]
    if not paths:
        raise FrameworkError("report: name at least one run directory.")
    runs = find_runs(paths)
    if out is None:
        if len(paths) > 1:
            raise FrameworkError(f"report: {len(paths)} run directories given; say where the "
                                 f"comparison goes with --out DIR.")
        out = paths[0] / "report"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    figures: dict[str, bytes] = {}
    stage_names: list[str] = []
    for run in runs:
        stage_names += [n for n in run.stages if n not in stage_names]
    for name in stage_names:
        lines = [(run.label, curves.series(run.stages[name].log)) for run in runs
                 if name in run.stages and run.stages[name].log]
        lines = [(label, s) for label, s in lines if s]
        if lines:
            plugin = next(r.stages[name].plugin for r in runs if name in r.stages)
            figures[f"curves_{name}"] = plots.png(plots.curves(f"{name} ({plugin})", lines))
    if len(runs) == 1:
        for ev in runs[0].evaluations:
            m = ev.metrics
            scorers = html.scorer_names(m)
            figures[f"evaluation_{ev.stage}"] = plots.png(
                plots.evaluation(m["policies"], scorers, m["win_rate"], m["baseline"]))
            if m.get("pairwise"):
                figures[f"calibration_{ev.stage}"] = plots.png(plots.calibration(m["pairwise"]))
    for name, data in figures.items():
        (out / f"{name}.png").write_bytes(data)
    page = out / PAGE
    write_text_atomic(page, html.render(runs, figures, samples))
    return page


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m framework report",
        description="An HTML report (plots embedded) and PNGs of one run, or a comparison of "
                    "several runs or of a sweep directory.")
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR",
                        help="run directories, or the sweep directory of a -m run")
    parser.add_argument("--out", type=Path, help="where report.html and the PNGs go (default: "
                        "RUN_DIR/report for one run directory or sweep)")
    parser.add_argument("--samples", type=int, default=8,
                        help="held-out prompts whose samples are shown side by side (default 8)")
    args = parser.parse_args(list(argv))
    if args.samples < 0:
        parser.error("--samples: must be >= 0")
    try:
        page = write_report(args.runs, args.out, args.samples)
    except FrameworkError as exc:
        print(f"python -m framework report: {exc}", file=sys.stderr)
        return 2
    print(f"report: {page}")
    return 0
