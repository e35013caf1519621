"""Throughput and latency of the labeling app under concurrent labelers.

    python tests/benchmarks/bench_labeling_app.py                       # 2000 tasks, 8 labelers
    python tests/benchmarks/bench_labeling_app.py --tasks 500 --labelers 4 --overlap 0.25

Publishes `--tasks` tasks of K=4 responses into a fresh store (a temporary folder), serves the
app with `python -m framework label` on 127.0.0.1 (a free port, its own process), and has
`--labelers` client threads fetch their next task and submit a ranking through the JSON API
until none is left. Prints one JSON object: labels stored (and whether that equals what was
wanted, with none duplicated), seconds, labels per second, p50/p99 latency of fetching a task and
of submitting one, and the store's size. Bounded by `--timeout` seconds."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from labeling_apps import make_store, make_tasks, start_label_app  # noqa: E402
from reward_servers import free_port, stop  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=2000)
    p.add_argument("--labelers", type=int, default=8)
    p.add_argument("--overlap", type=float, default=0.1, help="share of tasks labeled twice")
    p.add_argument("--timeout", type=float, default=600)
    args = p.parse_args()
    names = [f"labeler{i}" for i in range(args.labelers)]
    shared = round(args.overlap * args.tasks)
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder) / "run"
        tasks = make_tasks(args.tasks)
        wanted = {t.task_id: 2 if i < shared else 1 for i, t in enumerate(tasks)}
        store, tokens = make_store(run_dir / "label", tasks, wanted=wanted, labelers=names)
        port = free_port()
        proc = start_label_app(run_dir, port)
        fetch, submit, failures = [], [], []
        deadline = time.monotonic() + args.timeout

        def work(name: str) -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                              headers={"Authorization": f"Bearer {tokens[name]}"}) as client:
                while time.monotonic() < deadline:
                    start = time.perf_counter()
                    task = client.get("/api/next").json()["task"]
                    fetch.append(time.perf_counter() - start)
                    if task is None:
                        return
                    start = time.perf_counter()
                    reply = client.post(f"/api/tasks/{task['task_id']}/label",
                                        json={"order": [3, 1, 0, 2]})
                    submit.append(time.perf_counter() - start)
                    if reply.status_code != 200:
                        failures.append(reply.text)
                        return

        try:
            start = time.monotonic()
            threads = [threading.Thread(target=work, args=(n,)) for n in names]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            seconds = time.monotonic() - start
        finally:
            stop(proc)
        records = store.records()
        keys = {(r.label.task_id, r.label.labeler) for r in records}
        size = sum(f.stat().st_size for f in (run_dir / "label").glob("labels.sqlite*"))
    print(json.dumps({
        "tasks": args.tasks, "labelers": args.labelers, "wanted_labels": sum(wanted.values()),
        "labels_stored": len(records), "all_stored_once": len(keys) == len(records) ==
        sum(wanted.values()), "failures": len(failures), "seconds": round(seconds, 2),
        "labels_per_second": round(len(records) / seconds, 1),
        "fetch_ms": {"p50": round(1000 * percentile(fetch, 0.5), 1),
                     "p99": round(1000 * percentile(fetch, 0.99), 1)},
        "submit_ms": {"p50": round(1000 * percentile(submit, 0.5), 1),
                      "p99": round(1000 * percentile(submit, 0.99), 1),
                      "mean": round(1000 * statistics.fmean(submit), 1) if submit else None},
        "store_bytes": size, "machine": platform.machine(), "python": platform.python_version()},
        indent=2))


if __name__ == "__main__":
    main()
