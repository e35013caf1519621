"""Real `python -m framework` runs of the whole instructgpt recipe on the tiny model and tiny
data, for the tests that kill, signal and resume them. Every stage saves often and runs enough
steps that a test can stop it between two checkpoints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SFT_STEPS, RM_STEPS, RL_STEPS = 24, 24, 8

# The instructgpt recipe on the built-in data, cut to a few steps per stage for the tiny model
# (model.name_or_path=TINY_MODEL_DIR), with the evaluate stage.
TINY_INSTRUCTGPT = [
    "stages.sft.params.args.num_train_epochs=1", "+stages.sft.params.args.max_steps=2",
    "stages.sft.params.args.per_device_train_batch_size=2", "stages.sft.params.args.logging_steps=1",
    "stages.sft.params.freeze_layers=0",  # the tiny model has 2 layers
    "stages.reward_model.params.freeze_layers=0", "stages.reward_model.params.args.max_steps=2",
    "stages.reward_model.params.args.logging_steps=1",
    "stages.rl.params.optimizer.params.steps=2", "stages.rl.params.optimizer.params.batch_size=2",
    "stages.rl.params.optimizer.params.num_minibatches=1",
    "stages.rl.params.optimizer.params.max_new_tokens=8",
    "stages.rl.params.optimizer.params.sample_every=0",
    "stages.rl.params.optimizer.params.save_every=0",
    "stages.rl.params.reward.params.calibration_size=4",
    "stages.rl.params.evaluation.num_prompts=4", "++stages.rl.params.evaluation.max_new_tokens=8",
    "stages.evaluate.params.num_prompts=3", "stages.evaluate.params.samples_per_prompt=2",
    "stages.evaluate.params.max_new_tokens=8", "++stages.evaluate.params.batch_size=4",
]


def slow_reward(prompt: str, response: str) -> float:
    """A reward that takes its time, so a PPO step lasts long enough to be interrupted."""
    time.sleep(0.15)
    return float(len(response.split()))


def write_data(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / f"{name}.jsonl" for name in ("demos", "rankings", "prompts")}
    paths["demos"].write_text("".join(
        json.dumps({"prompt": f"Name a colour ({i}).", "completion": f"Colour number {i}."}) + "\n"
        for i in range(16)))
    paths["rankings"].write_text("".join(
        json.dumps({"prompt": f"Pick a fruit ({i}).", "responses": [f"Apple {i}.", "Pear.", "No."]})
        + "\n" for i in range(16)))
    paths["prompts"].write_text("".join(
        json.dumps({"prompt": f"Tell me about topic {i}."}) + "\n" for i in range(16)))
    return paths


def overrides(model_dir: Path, data: dict[str, Path], run_dir: Path) -> list[str]:
    # `++` sets a key whether or not the recipe has it
    sft, rm, ppo = "++stages.sft.params.args", "++stages.reward_model.params", "++stages.rl.params"
    return [
        "+recipe=instructgpt", f"model.name_or_path={model_dir}",
        f"data.demonstrations.path={data['demos']}", "data.demonstrations.eval_fraction=0",
        f"data.comparisons.path={data['rankings']}", "data.comparisons.eval_fraction=0",
        f"data.prompts.path={data['prompts']}", "data.prompts.eval_fraction=0",
        f"{sft}.max_steps={SFT_STEPS}", f"{sft}.save_steps=2", f"{sft}.per_device_train_batch_size=2",
        f"{sft}.logging_steps=1", f"{sft}.max_length=64", f"{sft}.warmup_steps=0",
        "stages.sft.params.freeze_layers=0",  # the tiny model has 2 layers
        f"{rm}.freeze_layers=0", f"{rm}.args.max_steps={RM_STEPS}", f"{rm}.args.save_steps=2",
        f"{rm}.args.per_device_train_batch_size=3", f"{rm}.args.logging_steps=1",
        f"{rm}.args.max_length=64",
        f"{ppo}.optimizer.params.steps={RL_STEPS}", f"{ppo}.optimizer.params.save_every=1",
        f"{ppo}.optimizer.params.batch_size=2", f"{ppo}.optimizer.params.num_minibatches=1",
        f"{ppo}.optimizer.params.max_new_tokens=4", f"{ppo}.optimizer.params.ptx_coef=0",
        f"{ppo}.optimizer.params.value_init=policy", f"{ppo}.optimizer.params.sample_every=0",
        "~stages.rl.inputs.pretraining", "~stages.rl.inputs.reward_model",
        "~stages.rl.params.reward.params", f"{ppo}.reward.name=function",
        f"{ppo}.reward.params.function=tests.pipeline_runs:slow_reward",
        "~stages.evaluate", f"{ppo}.evaluation.num_prompts=0",
        f"hydra.run.dir={run_dir}",
    ]


def env() -> dict:
    return {**os.environ, "HYDRA_FULL_ERROR": "0", "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def run(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "framework", *args], cwd=REPO, env=env(),
                          capture_output=True, text=True, timeout=timeout)


def run_until(args: list[str], ready, sig: int, timeout: float = 300) -> subprocess.CompletedProcess:
    """Start the run, send `sig` as soon as `ready()` is true, and wait for it to end."""
    proc = subprocess.Popen([sys.executable, "-m", "framework", *args], cwd=REPO, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                raise AssertionError(f"the run ended (exit {proc.returncode}) before it was "
                                     f"ready to be stopped:\n{proc.stdout.read()[-6000:]}")
            if time.monotonic() > deadline:
                raise AssertionError("the run never became ready to be stopped")
            time.sleep(0.02)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def trl_checkpoint(stage_dir: Path) -> bool:
    """A TRL checkpoint the Trainer finished writing."""
    return any((stage_dir / "checkpoints").glob("checkpoint-*/trainer_state.json"))


def ppo_checkpoint(stage_dir: Path) -> bool:
    return any((stage_dir / "checkpoints").glob("step-*/state.json"))


def checkpoint_steps(stage_dir: Path) -> list[int]:
    return sorted(int(p.name.split("-")[-1]) for p in (stage_dir / "checkpoints").glob("*-*")
                  if not p.name.startswith("."))


def manifest(run_dir: Path, stage: str) -> dict:
    return json.loads((run_dir / stage / "manifest.json").read_text())


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


KILL = signal.SIGKILL


def sft_config(folder: Path, model_dir: Path, rows: int = 8, eval_fraction: float = 0.0,
               **args):
    """An in-process config of one `sft` stage on the tiny model; `args` go to trl.SFTConfig."""
    from omegaconf import OmegaConf

    from framework.pipeline.schema import RootConfig

    demos = Path(folder) / "demos.jsonl"
    demos.write_text("".join(json.dumps({"prompt": f"Say {i}.", "completion": f"{i} it is."})
                             + "\n" for i in range(rows)))
    args = {"per_device_train_batch_size": 2, **args}
    return OmegaConf.merge(OmegaConf.structured(RootConfig), {
        "model": {"name_or_path": str(model_dir)},
        "data": {"demos": {"kind": "demonstrations", "path": str(demos),
                           "eval_fraction": eval_fraction}},
        "stages": {"sft": {"plugin": "sft", "inputs": {"model": "model", "data": "data.demos"},
                           "params": {"args": args}}}})
