"""Throughput and latency of `serve-reward`, batched against one request at a time.

    python tests/benchmarks/bench_reward_server.py --reward-model RUN_DIR     # e.g. the main job's
    python tests/benchmarks/bench_reward_server.py --reward-model RUN_DIR --requests 400

Starts the server twice on 127.0.0.1 (a free port), once batching concurrent requests
(--max-batch-pairs 64) and once scoring each request alone (--max-batch-pairs 1), and sends the
same requests from `--clients` threads (8), one (prompt, response) pair each, taken from the
built-in rankings data. Prints one JSON object: per mode the requests, seconds, requests per
second, p50/p99 latency and the server's batch count; the speed-up of batching; and the largest
score difference between the two modes (batching must not change scores). Bounded: `--requests`
in all (2000 by default) and `--timeout` seconds per mode."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from reward_servers import free_port, start_serve_reward, stop  # noqa: E402


def pairs(n: int) -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in
            (REPO / "framework/data/builtin/rankings.jsonl").read_text().splitlines()]
    flat = [(row["prompt"], response) for row in rows for response in row["responses"]]
    return [flat[i % len(flat)] for i in range(n)]


def measure(reward_model: str, batch_pairs: int, work: list, clients: int, timeout: float) -> dict:
    port = free_port()
    # all cores for the server's torch (the test helper pins one thread)
    server = start_serve_reward(["--reward-model", reward_model, "--max-batch-pairs",
                                 str(batch_pairs)], port,
                                env={"OMP_NUM_THREADS": str(os.cpu_count() or 1)})
    url = f"http://127.0.0.1:{port}"
    latencies = [0.0] * len(work)
    scores = [None] * len(work)
    errors: list[str] = []
    try:
        with httpx.Client(base_url=url, timeout=60) as warm:  # load, first-call costs
            for prompt, response in work[:8]:
                warm.post("/score", json={"prompts": [prompt], "responses": [response]})
        before = httpx.get(f"{url}/health").json()
        deadline = time.monotonic() + timeout

        def client(k: int) -> None:
            with httpx.Client(base_url=url, timeout=60) as c:
                for i in range(k, len(work), clients):
                    if time.monotonic() > deadline:
                        errors.append("timeout")
                        return
                    prompt, response = work[i]
                    start = time.perf_counter()
                    reply = c.post("/score", json={"prompts": [prompt], "responses": [response]})
                    latencies[i] = time.perf_counter() - start
                    if reply.status_code != 200:
                        errors.append(reply.text[:200])
                        return
                    scores[i] = reply.json()["scores"][0]

        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - start
        after = httpx.get(f"{url}/health").json()
    finally:
        stop(server)
    if errors:
        raise SystemExit(f"max_batch_pairs={batch_pairs}: {errors[0]}")
    ordered = sorted(latencies)
    batches = after["batches"] - before["batches"]
    return {"max_batch_pairs": batch_pairs, "requests": len(work), "seconds": round(seconds, 2),
            "requests_per_second": round(len(work) / seconds, 1),
            "p50_ms": round(1000 * ordered[len(ordered) // 2], 1),
            "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
            "server_batches": batches,
            "mean_pairs_per_batch": round(len(work) / batches, 2), "scores": scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reward-model", required=True,
                        help="a reward-model checkpoint or a run directory")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    work = pairs(args.requests)
    batched = measure(args.reward_model, 64, work, args.clients, args.timeout)
    alone = measure(args.reward_model, 1, work, args.clients, args.timeout)
    diff = max(abs(a - b) for a, b in zip(batched.pop("scores"), alone.pop("scores")))
    print(json.dumps({
        "reward_model": args.reward_model, "clients": args.clients,
        "batched": batched, "one_at_a_time": alone,
        "speedup": round(batched["requests_per_second"] / alone["requests_per_second"], 2),
        "max_score_difference": diff,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "torch_threads": subprocess.run(
                        [sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                        capture_output=True, text=True).stdout.strip()},
    }, indent=2))


if __name__ == "__main__":
    main()
