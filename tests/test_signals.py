"""SIGTERM and SIGINT stop a real run cleanly: the running stage saves a checkpoint at its next
step boundary, its manifest says "interrupted", the process exits non-zero saying how to resume,
and the same command resumes from that checkpoint."""

from __future__ import annotations

import os
import re
import signal

import pytest

import pipeline_runs as runs
from framework.common import signals


def test_handlers_set_a_flag_and_are_restored():
    before = {sig: signal.getsignal(sig) for sig in signals.SIGNALS}
    with signals.stop_on_signals():
        assert signals.stop_requested() is None
        os.kill(os.getpid(), signal.SIGTERM)  # would end the test process without the handler
        assert signals.stop_requested() == "SIGTERM"
        with pytest.raises(KeyboardInterrupt, match="second stop signal"):
            os.kill(os.getpid(), signal.SIGINT)
    assert {sig: signal.getsignal(sig) for sig in signals.SIGNALS} == before
    assert signals.stop_requested() is None


@pytest.mark.slow
def test_sigterm_and_sigint_checkpoint_stop_and_resume(tmp_path, tiny_model_dir):
    run_dir = tmp_path / "run"
    args = runs.overrides(tiny_model_dir, runs.write_data(tmp_path / "data"), run_dir)

    # SIGTERM during sft: it saves the step it is on and stops; exit 128 + 15
    stopped = runs.run_until(args, lambda: runs.trl_checkpoint(run_dir / "sft"), signal.SIGTERM)
    assert stopped.returncode == 143, stopped.stdout[-3000:]
    found = re.search(r"stages\.sft: stopped by SIGTERM at step (\d+) of 24, after saving the "
                      r"checkpoint (\S+)checkpoint-(\d+)\.", stopped.stdout)
    assert found and found.group(1) == found.group(3), stopped.stdout[-3000:]
    step = int(found.group(1))
    assert runs.checkpoint_steps(run_dir / "sft")[-1] == step < runs.SFT_STEPS
    assert "Interrupted cleanly. To resume, run the same command again:" in stopped.stdout
    assert f"python -m framework +recipe=instructgpt model.name_or_path={tiny_model_dir}" \
        in stopped.stdout
    manifest = runs.manifest(run_dir, "sft")
    assert manifest["status"] == "interrupted" and "SIGTERM" in manifest["error"]
    assert runs.summary(run_dir)["stages"]["sft"]["status"] == "interrupted"

    # the same command resumes sft from that checkpoint; SIGINT during rl: exit 128 + 2
    stopped = runs.run_until(args, lambda: runs.ppo_checkpoint(run_dir / "rl"), signal.SIGINT)
    assert stopped.returncode == 130, stopped.stdout[-3000:]
    assert f"stages.sft: resuming from {run_dir / 'sft' / 'checkpoints'}/checkpoint-{step}" \
        in stopped.stdout
    found = re.search(r"PPO stopped by SIGINT at step (\d+) of 8, after saving the checkpoint "
                      r"\S+step-0*(\d+)\.", stopped.stdout)
    assert found and found.group(1) == found.group(2), stopped.stdout[-3000:]
    rl_step = int(found.group(1))
    assert runs.checkpoint_steps(run_dir / "rl")[-1] == rl_step < runs.RL_STEPS
    assert runs.manifest(run_dir, "rl")["status"] == "interrupted"
    stages = runs.summary(run_dir)["stages"]
    assert stages["sft"]["status"] == stages["reward_model"]["status"] == "done"
    assert stages["rl"]["status"] == "interrupted"

    # and once more: finished stages skipped, rl resumed, the step counts of a whole run
    done = runs.run(args)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "Resuming PPO from" in done.stdout + done.stderr
    stages = runs.summary(run_dir)["stages"]
    assert [stages[s]["status"] for s in ("sft", "reward_model", "rl")] == \
        ["skipped", "skipped", "done"]
    assert stages["sft"]["metrics"]["train_steps"] == runs.SFT_STEPS
    assert stages["rl"]["metrics"]["train_steps"] == runs.RL_STEPS


def test_a_stop_during_a_stages_setup_stops_before_training(tmp_path, tiny_model_dir):
    """SIGINT while the stage loads its data and model: training never starts, no checkpoint
    is written, the manifest says interrupted, and the same command then runs it whole."""
    import json


    from framework.errors import TrainingInterrupted
    from framework.pipeline.runner import run_pipeline
    from framework_plugins.stages.sft import SFTStage

    cfg = runs.sft_config(tmp_path, tiny_model_dir, rows=6, max_steps=2)
    original = SFTStage.load_data

    def load_data_then_interrupt(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # arrives during setup
        return original(self, *args, **kwargs)

    run_dir = tmp_path / "run"
    SFTStage.load_data = load_data_then_interrupt
    try:
        with pytest.raises(TrainingInterrupted, match=r"stages\.sft: stopped by SIGINT before "
                                                       r"training started"):
            run_pipeline(cfg, run_dir, "t")
    finally:
        SFTStage.load_data = original
    assert list((run_dir / "sft").glob("checkpoints/checkpoint-*")) == []
    assert json.loads((run_dir / "sft" / "manifest.json").read_text())["status"] == "interrupted"
    assert run_pipeline(cfg, run_dir, "t")["stages"]["sft"]["metrics"]["train_steps"] == 2
