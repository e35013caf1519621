"""Kill-and-resume on real runs: `python -m framework` killed with SIGKILL in each stage, then
started again with the same command, skips the finished stages, continues the killed one from
its last checkpoint, and ends with the step counts of an uninterrupted run."""

from __future__ import annotations

import re

import pytest

import pipeline_runs as runs


@pytest.mark.slow
def test_sigkill_in_each_stage_then_the_same_command_resumes(tmp_path, tiny_model_dir):
    run_dir = tmp_path / "run"
    args = runs.overrides(tiny_model_dir, runs.write_data(tmp_path / "data"), run_dir)

    # 1. killed in sft, once a checkpoint of it exists
    killed = runs.run_until(args, lambda: runs.trl_checkpoint(run_dir / "sft"), runs.KILL)
    assert killed.returncode == -9
    assert runs.manifest(run_dir, "sft")["status"] == "running"  # it never got to say otherwise
    sft_saved = runs.checkpoint_steps(run_dir / "sft")[-1]
    assert 0 < sft_saved < runs.SFT_STEPS

    # 2. the same command: sft resumes from that checkpoint and finishes; killed in reward_model
    killed = runs.run_until(args, lambda: runs.trl_checkpoint(run_dir / "reward_model"), runs.KILL)
    assert killed.returncode == -9, killed.stdout[-3000:]
    assert f"stages.sft: resuming from {run_dir / 'sft' / 'checkpoints'}/checkpoint-{sft_saved}" \
        in killed.stdout
    assert runs.summary(run_dir)["stages"]["sft"]["status"] == "done"
    assert runs.summary(run_dir)["stages"]["sft"]["metrics"]["train_steps"] == runs.SFT_STEPS
    rm_saved = runs.checkpoint_steps(run_dir / "reward_model")[-1]
    assert 0 < rm_saved < runs.RM_STEPS

    # 3. sft is skipped, reward_model resumes and finishes; killed in rl
    killed = runs.run_until(args, lambda: runs.ppo_checkpoint(run_dir / "rl"), runs.KILL)
    assert killed.returncode == -9, killed.stdout[-3000:]
    assert "stage sft: already done with the same config, skipped" in killed.stdout
    assert (f"stages.reward_model: resuming from "
            f"{run_dir / 'reward_model' / 'checkpoints'}/checkpoint-{rm_saved}") in killed.stdout
    stages = runs.summary(run_dir)["stages"]
    assert stages["sft"]["status"] == "skipped"
    assert stages["reward_model"]["status"] == "done"
    assert stages["reward_model"]["metrics"]["train_steps"] == runs.RM_STEPS
    rl_saved = runs.checkpoint_steps(run_dir / "rl")[-1]
    assert 0 < rl_saved < runs.RL_STEPS

    # 4. sft and reward_model are skipped, rl resumes from its full-state checkpoint and finishes
    done = runs.run(args)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    log = done.stdout + done.stderr
    assert "stage sft: already done with the same config, skipped" in log
    assert "stage reward_model: already done with the same config, skipped" in log
    assert re.search(rf"Resuming PPO from \S+step-0*{rl_saved} \(step {rl_saved}\)", log)
    # only the steps after the checkpoint ran in this process
    assert f"PPO step {rl_saved}/{runs.RL_STEPS}" not in log
    assert f"PPO step {rl_saved + 1}/{runs.RL_STEPS}" in log
    stages = runs.summary(run_dir)["stages"]
    assert [stages[s]["status"] for s in ("sft", "reward_model", "rl")] == \
        ["skipped", "skipped", "done"]
    assert stages["sft"]["metrics"]["train_steps"] == runs.SFT_STEPS
    assert stages["reward_model"]["metrics"]["train_steps"] == runs.RM_STEPS
    assert stages["rl"]["metrics"]["train_steps"] == runs.RL_STEPS
    assert runs.manifest(run_dir, "rl")["status"] == "done"
    assert (run_dir / "rl" / "policy" / "model.safetensors").exists()


def test_a_stage_stopped_after_its_final_checkpoint_does_not_train_past_max_steps(
        tmp_path, tiny_model_dir):
    """Killed during the final evaluation or save (the last checkpoint written, the model and
    manifest not): the same command loads that checkpoint instead of training a further step,
    and ends with an uninterrupted run's step count and weights."""
    import json
    import shutil

    from safetensors.torch import load_file

    from framework.pipeline.runner import run_pipeline

    def cfg():
        return runs.sft_config(tmp_path, tiny_model_dir, eval_fraction=0.25, max_steps=2,
                               save_steps=1, logging_steps=1)

    whole = run_pipeline(cfg(), tmp_path / "whole", "t")["stages"]["sft"]["metrics"]
    run = tmp_path / "stopped"
    run_pipeline(cfg(), run, "t")
    manifest = json.loads((run / "sft" / "manifest.json").read_text())
    (run / "sft" / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    shutil.rmtree(run / "sft" / "model")  # as if killed while saving it
    again = run_pipeline(cfg(), run, "t")["stages"]["sft"]
    assert again["status"] == "done"
    assert again["metrics"]["train_steps"] == whole["train_steps"] == 2
    assert again["metrics"]["train_loss"] == pytest.approx(whole["train_loss"])
    assert again["metrics"]["eval_loss"] == pytest.approx(whole["eval_loss"])
    state = json.loads((run / "sft" / "checkpoints" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and not (run / "sft" / "checkpoints" / "checkpoint-3").exists()
    a = load_file(str(tmp_path / "whole" / "sft" / "model" / "model.safetensors"))
    b = load_file(str(run / "sft" / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


@pytest.mark.slow
def test_sigkill_after_the_final_checkpoint_and_between_stages(tmp_path, tiny_model_dir):
    """SIGKILL once SFT's final checkpoint is written (its evaluation and save, or the start of
    the next stage, still to come), then once the reward model is done; the same command each
    time ends with an uninterrupted run's step counts and no step past max_steps."""
    run_dir = tmp_path / "run"
    args = runs.overrides(tiny_model_dir, runs.write_data(tmp_path / "data"), run_dir)
    final = run_dir / "sft" / "checkpoints" / f"checkpoint-{runs.SFT_STEPS}" / "trainer_state.json"
    killed = runs.run_until(args, final.exists, runs.KILL)
    assert killed.returncode == -9
    killed = runs.run_until(args, lambda: (run_dir / "reward_model" / "manifest.json").exists()
                            and runs.manifest(run_dir, "reward_model")["status"] == "done",
                            runs.KILL)
    assert killed.returncode == -9, killed.stdout[-3000:]
    assert runs.checkpoint_steps(run_dir / "sft")[-1] == runs.SFT_STEPS  # never past it
    done = runs.run(args)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    stages = runs.summary(run_dir)["stages"]
    assert stages["reward_model"]["status"] == "skipped"
    assert stages["sft"]["metrics"]["train_steps"] == runs.SFT_STEPS
    assert stages["reward_model"]["metrics"]["train_steps"] == runs.RM_STEPS
    assert stages["rl"]["metrics"]["train_steps"] == runs.RL_STEPS
    assert runs.checkpoint_steps(run_dir / "sft")[-1] == runs.SFT_STEPS
    assert runs.checkpoint_steps(run_dir / "reward_model")[-1] == runs.RM_STEPS


def test_a_tampered_checkpoint_is_named_without_advising_unsafe_loading(tmp_path, tiny_model_dir):
    import json
    import pickle
    import shutil


    from framework.errors import CheckpointError
    from framework.pipeline.runner import run_pipeline

    cfg = runs.sft_config(tmp_path, tiny_model_dir, max_steps=2, save_steps=1)
    run = tmp_path / "run"
    run_pipeline(cfg, run, "t")
    checkpoints = run / "sft" / "checkpoints"
    shutil.rmtree(checkpoints / "checkpoint-2")  # as if killed before the last one
    manifest = json.loads((run / "sft" / "manifest.json").read_text())
    (run / "sft" / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    for name in ("rng_state.pth", "optimizer.pt"):  # an altered file: a pickle of a function
        if (checkpoints / "checkpoint-1" / name).exists():
            (checkpoints / "checkpoint-1" / name).write_bytes(pickle.dumps(shutil.rmtree))
    with pytest.raises(CheckpointError) as err:
        run_pipeline(cfg, run, "t")
    message = str(err.value)
    assert message.startswith(f"stages.sft: the checkpoint {checkpoints / 'checkpoint-1'} holds a "
                              f"file that does not load safely")
    assert "Do not load it with weights_only=False; delete that checkpoint folder" in message


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["final_evaluation", "final_save"])
def test_sigkill_during_the_final_evaluation_or_save_then_the_same_command(
        tmp_path, tiny_model_dir, moment):
    """SIGKILL at the exact moment (tests/kill_at.py wraps the Trainer from outside): the same
    command ends with an uninterrupted run's steps, metrics and weights, and trains no step past
    max_steps."""
    import subprocess
    import sys

    from safetensors.torch import load_file

    data = runs.write_data(tmp_path / "data")

    def args(run_dir):
        return [*runs.overrides(tiny_model_dir, data, run_dir), "~stages.reward_model",
                "~stages.rl", "data.demonstrations.eval_fraction=0.25"]

    whole = runs.run(args(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stdout[-3000:]
    run_dir = tmp_path / "killed"
    killed = subprocess.run([sys.executable, str(runs.REPO / "tests" / "kill_at.py"), moment,
                             *args(run_dir)], cwd=runs.REPO, env=runs.env(),
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, (killed.stdout + killed.stderr)[-3000:]
    assert runs.manifest(run_dir, "sft")["status"] == "running"
    again = runs.run(args(run_dir))
    assert again.returncode == 0, again.stdout[-3000:]
    assert "resuming from" not in again.stdout  # the final checkpoint is loaded, not trained on
    expected = runs.summary(tmp_path / "whole")["stages"]["sft"]["metrics"]
    metrics = runs.summary(run_dir)["stages"]["sft"]["metrics"]
    assert metrics["train_steps"] == expected["train_steps"] == runs.SFT_STEPS
    assert metrics["eval_loss"] == pytest.approx(expected["eval_loss"])
    assert runs.checkpoint_steps(run_dir / "sft")[-1] == runs.SFT_STEPS
    a = load_file(str(tmp_path / "whole" / "sft" / "model" / "model.safetensors"))
    b = load_file(str(run_dir / "sft" / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
