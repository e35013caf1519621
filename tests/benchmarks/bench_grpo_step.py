"""Seconds per GRPO step: the framework's `grpo` optimizer against raw `trl.GRPOTrainer`, same
model, settings, prompts and reward, in the same process; prints one JSON object.

    python tests/benchmarks/bench_grpo_step.py --steps 4 --repeats 2

Each side's step time is TRL's own `step_time` log entry (generation, reward, loss, update),
averaged over the steps after the first (warm-up); the sides alternate `repeats` times and the
fastest mean of each is kept. `ratio` = ours / raw."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

PROMPTS = [f"Write one sentence about topic number {i}." for i in range(32)]


def characters(prompt, response) -> float:
    return float(len(response))


def raw_reward(prompts, completions, **_):
    return [characters(p, c[-1]["content"]) for p, c in zip(prompts, completions)]


def settings(args):
    return {"max_steps": args.steps, "num_generations": args.generations,
            "per_device_train_batch_size": args.prompts * args.generations,
            "max_completion_length": args.tokens, "temperature": 1.0, "beta": 0.04,
            "learning_rate": 1e-6, "logging_steps": 1, "save_strategy": "no", "seed": 0,
            "report_to": "none", "bf16": False, "use_cpu": not torch.cuda.is_available()}


def step_times(log_history) -> list[float]:
    return [e["step_time"] for e in log_history if "step_time" in e][1:]


def run_raw(model_dir: str, args, out: Path) -> list[float]:
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    data = datasets.Dataset.from_dict({"prompt": [[{"role": "user", "content": p}] for p in PROMPTS]})
    trainer = GRPOTrainer(model=model, reward_funcs=[raw_reward],
                          args=GRPOConfig(output_dir=str(out), **settings(args)),
                          train_dataset=data, processing_class=tokenizer)
    trainer.train()
    return step_times(trainer.state.log_history)


def run_ours(model_dir: str, args, out: Path) -> list[float]:
    from framework.artifacts import MODEL, PROMPTS as PROMPTS_KIND, Artifact
    from framework.data import DataSourceConfig, data_artifact
    from framework.optimizer import PolicyTrainingJob
    from framework_plugins.optimizers.trl_online import GRPOOptimizer
    from framework_plugins.reward_sources.function import FunctionReward

    data = out / "prompts.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    data.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    reward = FunctionReward(FunctionReward.parse_config(
        {"function": "tests.benchmarks.bench_grpo_step:characters"}, "reward"))
    reward.setup({})
    s = settings(args)
    optimizer = GRPOOptimizer(GRPOOptimizer.parse_config({
        "steps": args.steps, "prompts_per_step": args.prompts, "num_generations": args.generations,
        "max_new_tokens": args.tokens, "temperature": 1.0, "beta": 0.04, "learning_rate": 1e-6,
        "save_every": args.steps}, "optimizer.params"))
    job = PolicyTrainingJob(
        policy=Artifact(MODEL, model_dir),
        prompts=data_artifact(DataSourceConfig(kind=PROMPTS_KIND, path=str(data))),
        reward=reward, pretraining=None, output_dir=out, seed=s["seed"])
    captured = {}
    import trl

    original = trl.GRPOTrainer.train

    def train(self, *a, **k):  # read the trainer's own step times after it ran
        result = original(self, *a, **k)
        captured["times"] = step_times(self.state.log_history)
        return result

    trl.GRPOTrainer.train = train
    try:
        optimizer.train(job)
    finally:
        trl.GRPOTrainer.train = original
    return captured["times"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded:smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from framework.models import resolve_model_path

    model_dir = str(resolve_model_path(args.model))
    best = {"raw": float("inf"), "ours": float("inf")}
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for side, run in (("raw", run_raw), ("ours", run_ours)):
                times = run(model_dir, args, Path(tmp) / f"{side}-{r}")
                best[side] = min(best[side], statistics.mean(times))
    print(json.dumps({
        "benchmark": "grpo_step", "model": args.model, "steps": args.steps,
        "repeats": args.repeats, "prompts_per_step": args.prompts,
        "num_generations": args.generations, "max_new_tokens": args.tokens,
        "seconds_per_step": {k: round(v, 4) for k, v in best.items()},
        "ratio": round(best["ours"] / best["raw"], 4),
        "wall_s": round(time.monotonic() - start, 1),
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                    "torch": torch.__version__, "cuda": torch.cuda.is_available()}}, indent=1))


if __name__ == "__main__":
    main()
