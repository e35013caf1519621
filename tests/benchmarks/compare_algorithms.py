"""PPO-ptx, GRPO, RLOO, DPO and KTO side by side on the embedded default: one command runs each
recipe in its own run directory (same data, same SFT settings, same seed, same evaluate stage)
and prints one JSON object, with the table README shows as Markdown.

    python tests/benchmarks/compare_algorithms.py --out runs/compare
    python tests/benchmarks/compare_algorithms.py --out runs/compare --recipes dpo kto seed=1

Each figure comes from the run's summary.json: labeler scores, KL to SFT, response length,
distinct-2 and win rate from its `evaluate` stage; wall time is the sum of its stages' seconds,
peak memory the largest of its stages' peak resident size, each also for the stage that trained
the evaluated policy alone. A finished run directory is reused
(its stages are skipped and their recorded seconds and peaks are read), so an interrupted
comparison continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

RECIPES = ("instructgpt", "grpo", "rloo", "dpo", "kto")
ALGORITHM = {"instructgpt": "PPO-ptx", "grpo": "GRPO", "rloo": "RLOO", "dpo": "DPO", "kto": "KTO"}


def run_recipe(recipe: str, out: Path, overrides: list[str]) -> dict:
    run_dir = out / recipe
    command = [sys.executable, "-m", "framework", f"+recipe={recipe}",
               f"hydra.run.dir={run_dir}", *overrides]
    with open(out / f"{recipe}.log", "a") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT)
    if code != 0:
        raise SystemExit(f"{recipe}: exit {code}; see {out / f'{recipe}.log'}")
    return json.loads((run_dir / "summary.json").read_text())


def row(recipe: str, summary: dict) -> dict:
    stages = summary["stages"]
    evaluation = stages["evaluate"]["metrics"]
    baseline = evaluation["baseline"]
    (policy,) = [name for name in evaluation["policies"] if name != baseline]
    sft, tuned = evaluation["policies"][baseline], evaluation["policies"][policy]
    ran = [entry.get("when_run", entry) for entry in stages.values()]
    peaks = [r.get("peak_rss_mib") for r in ran if r.get("peak_rss_mib") is not None]
    return {
        "algorithm": ALGORITHM.get(recipe, recipe), "recipe": recipe,
        "labeler_sft": sft["labeler"], "labeler_policy": tuned["labeler"],
        "labeler_gain": tuned["labeler"] - sft["labeler"],
        "win_rate": evaluation["win_rate"][policy],
        "kl": tuned["kl"],
        "response_length_sft": sft["response_length"], "response_length": tuned["response_length"],
        "distinct_2_sft": sft["distinct_2"], "distinct_2": tuned["distinct_2"],
        "wall_s": round(sum(r["seconds"] for r in ran), 1),
        "stage_seconds": {name: r["seconds"] for name, r in zip(stages, ran)},
        "peak_rss_mib": max(peaks) if peaks else None,
        # the stage that trained the evaluated policy (the evaluate input is named after it)
        "training_stage": policy,
        "training_seconds": dict(zip(stages, ran)).get(policy, {}).get("seconds"),
        "training_peak_rss_mib": dict(zip(stages, ran)).get(policy, {}).get("peak_rss_mib"),
    }


def markdown(rows: list[dict]) -> str:
    lines = ["| algorithm | labeler SFT -> policy (gain) | win rate vs SFT [95% CI] | KL to SFT "
             "| length SFT -> policy (tokens) | distinct-2 SFT -> policy | wall: recipe (its "
             "training stage) | peak RSS: recipe (training stage) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        w = r["win_rate"]
        lines.append(
            f"| {r['algorithm']} | {r['labeler_sft']:.3f} -> {r['labeler_policy']:.3f} "
            f"({r['labeler_gain']:+.3f}) | {w['win_rate']:.2f} [{w['ci_low']:.2f}, {w['ci_high']:.2f}] "
            f"| {r['kl']:.2f} | {r['response_length_sft']:.1f} -> {r['response_length']:.1f} "
            f"| {r['distinct_2_sft']:.3f} -> {r['distinct_2']:.3f} "
            f"| {r['wall_s'] / 60:.1f} min ({_minutes(r['training_seconds'])}) "
            f"| {_gib(r['peak_rss_mib'])} ({_gib(r['training_peak_rss_mib'])}) |")
    return "\n".join(lines)


def _minutes(seconds) -> str:
    return "?" if seconds is None else f"{seconds / 60:.1f} min"


def _gib(mib) -> str:
    return "?" if mib is None else f"{mib / 1024:.2f} GiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/compare"))
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES))
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every recipe")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    rows = [row(recipe, run_recipe(recipe, args.out, args.overrides)) for recipe in args.recipes]
    result = {"rows": rows, "markdown": markdown(rows), "overrides": args.overrides,
              "seconds": round(time.monotonic() - start, 1),
              "machine": {"platform": platform.platform(), "python": platform.python_version()}}
    (args.out / "comparison.json").write_text(json.dumps(result, indent=2))
    from framework.report import write_report  # one page: the runs' tables and overlaid curves

    result["report"] = str(write_report([args.out / r for r in args.recipes], args.out / "report"))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
