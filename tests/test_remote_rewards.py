"""Reward sources in real runs: PPO scored by `serve-reward` over HTTP end to end, with the
server killed mid-run (a clear stop, the checkpoints kept, the same command resuming once the
server is back), and an ensemble of the reward model and the labeler in the instructgpt recipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pipeline_runs as runs
from pipeline_runs import TINY_INSTRUCTGPT
from reward_servers import free_port, start_serve_reward, stop

from framework.common import training_log

REPO = Path(__file__).resolve().parents[1]


def http_overrides(base: list[str], url: str) -> list[str]:
    """pipeline_runs' tiny recipe with the RL stage scored over HTTP instead of in-process."""
    kept = [a for a in base if ".reward.name=" not in a and ".reward.params.function=" not in a]
    ppo = "++stages.rl.params"
    return [*kept, f"{ppo}.reward.name=http", f"{ppo}.reward.params.url={url}",
            f"{ppo}.reward.params.retries=2", f"{ppo}.reward.params.backoff_s=0.2",
            f"{ppo}.reward.params.timeout_s=20"]


def test_ppo_over_http_stops_cleanly_when_the_server_dies_and_resumes(tiny_model_dir, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = ["--function", "tests.pipeline_runs:slow_reward"]
    run_dir = tmp_path / "run"
    args = http_overrides(runs.overrides(tiny_model_dir, runs.write_data(tmp_path / "data"),
                                         run_dir), url)
    server = start_serve_reward(serve, port)
    rl = run_dir / "rl"
    proc = subprocess.Popen([sys.executable, "-m", "framework", *args], cwd=REPO, env=runs.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 400
        while not (rl / "checkpoints" / "step-000002" / "state.json").exists():
            assert proc.poll() is None, proc.stdout.read()[-4000:]
            assert time.monotonic() < deadline, "PPO never reached step 2"
            time.sleep(0.05)
        stop(server)  # kill -9, in the middle of the run
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        stop(server)
    assert proc.returncode == 2, out[-4000:]
    assert f"the reward server at {url}/score did not answer after 3 tries" in out
    assert "No score was made up and no step trained without one" in out
    stopped_at = runs.checkpoint_steps(rl)[-1]
    assert 2 <= stopped_at < runs.RL_STEPS
    assert runs.summary(run_dir)["stages"]["rl"]["status"] == "failed"
    assert not (rl / "policy").exists()  # nothing was finished on made-up rewards

    server = start_serve_reward(serve, port)  # back up: the same command resumes
    try:
        again = runs.run(args, timeout=400)
    finally:
        stop(server)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"Resuming PPO from {rl / 'checkpoints' / f'step-{stopped_at:06d}'}" in (
        again.stdout + again.stderr)
    log = training_log.read(rl)
    assert [e["step"] for e in log] == list(range(1, runs.RL_STEPS + 1))
    assert all(e["reward/http_retries"] == 0 for e in log)  # each trained step: scored first try
    assert runs.summary(run_dir)["stages"]["rl"]["metrics"]["train_steps"] == runs.RL_STEPS


def test_an_ensemble_of_the_reward_model_and_the_labeler_runs_in_the_instructgpt_recipe(
        tiny_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    reward = "stages.rl.params.reward"
    proc = subprocess.run(
        [sys.executable, "-m", "framework", "+recipe=instructgpt", f"hydra.run.dir={run_dir}",
         f"model.name_or_path={tiny_model_dir}", *TINY_INSTRUCTGPT, "~stages.evaluate",
         "report=false", f"{reward}.name=ensemble", f"~{reward}.params",
         f"+{reward}.params.members.reward.name=reward_model",
         f"+{reward}.params.members.labeler.name=function",
         f"+{reward}.params.members.labeler.params.function=framework.data.builtin.labeler:score",
         f"+{reward}.params.weights.labeler=0.5", f"+{reward}.params.calibration_size=4"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
        text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    stats = json.loads((run_dir / "rl" / "reward_calibration.json").read_text())
    assert set(stats) == {"reward", "labeler"} and all(s["count"] == 4 for s in stats.values())
    log = training_log.read(run_dir / "rl")
    assert len(log) == 2 and all({"reward/reward", "reward/labeler"} <= set(e) for e in log)
    assert all(0 <= e["reward/labeler"] <= 2.5 for e in log)  # the labeler's raw scale
