"""Seconds per PPO step and peak memory: this framework's PPO against TRL 1.12.0's experimental
PPOTrainer, same settings, same run. Prints one JSON object. A benchmark, not a test (pytest does
not collect bench_*.py).

    source /work/venv/bin/activate
    python tests/benchmarks/bench_ppo_step.py [--trl-python /tmp/trl112/bin/python] [--steps 3]

TRL 1.12.0 lives in its own venv (see README.md here); its side is driven by
trl_ppo_driver.py, run by that venv's python.

Setting (both): SmolLM2-135M-Instruct full fine-tuning in fp32 with separate policy, reference,
reward and value models (reward and value start from one reward-model checkpoint built here: the
SmolLM2 backbone with a seeded random score head), 8 prompts per batch, exactly 48 response tokens
(EOS masked by `min_new_tokens=48` in both), temperature 0.7 (TRL's default), 4 PPO epochs of 1
minibatch, learning rate 3e-6 for policy and value, kl coef 0.05, torch threads 2.

Each implementation runs in its own long-lived subprocess (so peak RSS is its own). After a
warm-up step (not timed) the two take turns: one step of one, then one step of the other, so
background load on the shared machine falls on both alike. A step runs only while the other
process waits on its stdin, its last step too (neither goes on to finish and exit until both have
run all their steps); a step is timed from the "go" to the end of that step's loop body.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODEL = "embedded:smollm2-135m-instruct"
PROMPTS = [
    "Explain in two sentences why the sky is blue.",
    "Write a short, friendly note inviting a neighbour to a garden party on Saturday.",
    "What are three things to check before riding a bicycle?",
    "Give me a simple recipe for tomato soup.",
    "Describe the water cycle to a ten-year-old.",
    "Suggest a name for a small bakery and explain the choice.",
    "How do I politely decline a meeting invitation?",
    "List some tips for staying focused while studying at home.",
]


# ------------------------------------------------------------------------------- protocol
def emit(**obj):
    print("BENCH " + json.dumps(obj), flush=True)


def wait_go():
    if sys.stdin.readline().strip() != "go":
        sys.exit(0)


def wait_finish():
    """After its last timed step a worker idles until every worker's steps are timed: what it
    does next (its final checkpoint, freeing GBs, exiting) would otherwise run alongside the other
    implementation's last step."""
    sys.stdin.readline()


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ------------------------------------------------------------------------ our implementation
def run_ours(setup: dict) -> None:
    import torch

    torch.set_num_threads(setup["threads"])
    from framework import rollout
    from framework.artifacts import REWARD_MODEL, Artifact
    from framework.models import ModelConfig, load_tokenizer
    from framework.models.adapters import AdapterConfig
    from framework_plugins.optimizers.ppo.config import PPOConfig
    from framework_plugins.optimizers.ppo.data import make_prompt
    from framework_plugins.optimizers.ppo.trainer import PPOInputs, PPOTrainer
    from framework_plugins.reward_sources.reward_model import RewardModelSourceConfig, RewardModelReward

    steps = setup["steps"] + 1
    output_dir = Path(tempfile.mkdtemp(prefix="ours_ppo_bench_"))  # its checkpoint: 3 GB, removed
    rss_before_models = rss_mb()  # torch, transformers and the rest imported; no weights yet
    adapter = setup.get("adapter", "none")
    tokenizer = load_tokenizer(setup["policy"])
    reward = RewardModelReward(RewardModelSourceConfig(batch_size=setup["batch_size"]))
    reward.setup({"reward_model": Artifact(REWARD_MODEL, setup["reward_model"])}, device="cpu")
    config = PPOConfig(
        steps=steps, batch_size=setup["batch_size"], num_minibatches=setup["num_minibatches"],
        ppo_epochs=setup["ppo_epochs"], learning_rate=setup["learning_rate"],
        gradient_accumulation_steps=setup.get("gradient_accumulation_steps", 1),
        value_learning_rate=setup["learning_rate"], max_new_tokens=setup["new_tokens"],
        temperature=setup["temperature"], init_kl_coef=setup["kl_coef"], cliprange=0.2,
        cliprange_value=0.2, vf_coef=0.1, gamma=1.0, lam=0.95,
        max_grad_norm=0.0,  # TRL's PPO loop does not clip gradients; ours still checks their norm
        # with adapters the critic is an adapter on the policy's base (shared_base.py)
        value_init="reward_model" if adapter == "none" else "policy",
        save_every=0, sample_every=0, log_every=1,
    )
    trainer = PPOTrainer(
        config, PPOInputs(policy_path=setup["policy"], tokenizer=tokenizer, reward=reward,
        prompts=[make_prompt([{"role": "user", "content": m[-1]["content"]}], "bench")
                 for m in setup["prompts"]],
        output_dir=output_dir, seed=setup["seed"],
        reward_model_path=setup["reward_model"],
        adapter=AdapterConfig(kind=adapter), model=ModelConfig()))
    # Exactly `new_tokens` tokens: rollout.generate passes a GenerationConfig without
    # min_new_tokens, so generate fills it from the policy's generation_config.
    trainer.accelerator.unwrap_model(trainer.policy).generation_config.min_new_tokens = (
        setup["new_tokens"])

    phases: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - t0
        return wrapper

    rollout.generate = timed("generation", rollout.generate)  # the trainer calls rollout.generate
    trainer.make_experience = timed("experience_incl_generation", trainer.make_experience)
    trainer.update = timed("update", trainer.update)
    clock = {"start": None, "step": 0}
    log = trainer.log

    def timed_log(stats, exp):  # called once at the end of every step
        log(stats, exp)
        seconds = time.perf_counter() - clock["start"]
        emit(event="step", step=clock["step"], seconds=seconds,
             response_tokens=int(exp["rollout"].response_mask.shape[1]),
             mean_response_length=stats["response_length"],
             ended_with_eos=stats["ended_with_eos"],
             phases={k: round(v, 3) for k, v in phases.items()},
             peak_rss_mb=peak_rss_mb(), rss_mb=rss_mb())
        phases.clear()
        clock["step"] += 1
        if clock["step"] < steps:
            wait_go()
            clock["start"] = time.perf_counter()
        else:
            wait_finish()

    trainer.log = timed_log
    emit(event="ready", rss_mb=rss_mb(), rss_before_models_mb=rss_before_models,
         optimizer="2 x " + type(
        trainer.optimizers["policy"].optimizer).__name__)
    wait_go()
    clock["start"] = time.perf_counter()
    trainer.train()  # its final checkpoint is written after the last step's clock stops
    emit(event="done", peak_rss_mb=peak_rss_mb())
    shutil.rmtree(output_dir, ignore_errors=True)


# ---------------------------------------------------------------------------- the benchmark
def build_reward_model(path: Path, seed: int) -> None:
    """SmolLM2's backbone with a random Linear(hidden, 1) score head: a reward model checkpoint."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from framework.models import load_tokenizer, resolve_model_path

    torch.manual_seed(seed)
    tokenizer = load_tokenizer(MODEL)
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_model_path(MODEL), num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)


class Worker:
    def __init__(self, name: str, argv: list[str], log: Path, threads: int):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
               "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
        env.pop("PYTHONPATH", None)  # the TRL venv must not see this repository's packages
        self.name, self.log = name, log
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(log, "w"), text=True, env=env, cwd=HERE)

    def read(self, event: str) -> dict:
        for line in self.proc.stdout:
            if line.startswith("BENCH "):
                msg = json.loads(line[6:])
                if msg["event"] == event:
                    return msg
        self.proc.wait()
        tail = self.log.read_text()[-3000:]
        raise RuntimeError(f"{self.name} exited (rc {self.proc.returncode}) before '{event}'; "
                           f"end of its log {self.log}:\n{tail}")

    def step(self) -> dict:
        self.send("go")
        return self.read("step")

    def finish(self) -> dict:
        """Let it go on past its last step (it waits in wait_finish) and collect its end."""
        self.send("finish")
        done = self.read("done")
        self.proc.wait(timeout=600)
        return done

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()


def summary(steps: list[dict], warmup: dict, done: dict, ready: dict) -> dict:
    seconds = [s["seconds"] for s in steps]
    keys = ("response_tokens", "mean_response_length", "ended_with_eos", "eos_in_responses")
    return {
        "seconds_per_step": sum(seconds) / len(seconds),
        "steps": [round(s, 3) for s in seconds],
        "warmup_seconds": round(warmup["seconds"], 3),
        "peak_rss_mb": round(max(done.get("peak_rss_mb", 0), steps[-1]["peak_rss_mb"]), 1),
        "peak_rss_mb_at_last_step": round(steps[-1]["peak_rss_mb"], 1),
        "rss_after_load_mb": round(ready["rss_mb"], 1),
        **({"rss_before_models_mb": round(ready["rss_before_models_mb"], 1)}
           if "rss_before_models_mb" in ready else {}),
        "optimizer": ready.get("optimizer"),
        "responses": {k: steps[-1][k] for k in keys if k in steps[-1]},
        "phases_seconds": [s.get("phases") or {"generation": round(s["generation_seconds"], 3)}
                           for s in steps],
        **({"versions": ready["versions"]} if "versions" in ready else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trl-python", default="/tmp/trl112/bin/python",
                        help="python of the venv holding trl==1.12.0")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=("ours", "trl"), help="run one implementation")
    parser.add_argument("--memory", action="store_true",
                        help="instead: peak memory of ours with full fine-tuning (four models) "
                             "against adapter=lora on one shared base, same model and batch")
    parser.add_argument("--grad-accum", type=int, default=1,
                        help="gradient accumulation steps per minibatch (ours only; with "
                             "--memory: micro-batches of 8 / this many rollouts)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run ours from SETUP
    args = parser.parse_args()
    if args.worker:
        return run_ours(json.loads(Path(args.worker).read_text()))

    import torch

    from framework.models import resolve_model_path

    work = Path(tempfile.mkdtemp(prefix="ppo_bench_"))
    build_reward_model(work / "reward_model", seed=0)
    setup = {
        "policy": resolve_model_path(MODEL), "reward_model": str(work / "reward_model"),
        "prompts": [[{"role": "user", "content": p}] for p in PROMPTS], "batch_size": 8,
        "new_tokens": 48, "num_minibatches": 1, "ppo_epochs": 4, "learning_rate": 3e-6,
        "temperature": 0.7, "kl_coef": 0.05, "threads": args.threads, "seed": 0,
        "steps": args.steps, "dtype": "float32", "gradient_accumulation_steps": args.grad_accum,
    }
    (work / "setup.json").write_text(json.dumps(setup, indent=1))
    if args.memory:
        return print(json.dumps(memory_comparison(setup, work, args.threads), indent=1))
    workers = {}
    if args.only != "trl":
        workers["ours"] = Worker("ours", [sys.executable, __file__, "--worker",
                                          str(work / "setup.json")], work / "ours.log",
                                 args.threads)
    if args.only != "ours":
        workers["trl_1_12_0"] = Worker("trl_1_12_0", [args.trl_python, str(
            HERE / "trl_ppo_driver.py"), str(work / "setup.json")], work / "trl.log",
                                       args.threads)
    ready = {name: w.read("ready") for name, w in workers.items()}
    results = {name: [] for name in workers}
    names = list(workers)
    for round_ in range(args.steps + 1):  # round 0 is the warm-up
        for name in names if round_ % 2 == 0 else names[::-1]:
            results[name].append(workers[name].step())
    out = {
        "config": {k: v for k, v in setup.items() if k not in ("policy", "reward_model")}
        | {"model": "SmolLM2-135M-Instruct (full fine-tuning; separate policy, reference, "
                    "reward and value models; value initialized from the reward model)",
           "response_tokens": "exactly new_tokens: EOS masked by min_new_tokens in both",
           "timing": "one warm-up step, then the implementations alternate step by step",
           "lr_schedule": "ours constant; TRL linear decay (its default)",
           "grad_clip": "neither clips (TRL's PPO loop does not; ours max_grad_norm=0)"},
    }
    for name, w in workers.items():  # only now, after every timed step of both
        out[name] = summary(results[name][1:], results[name][0], w.finish(), ready[name])
    if len(workers) == 2:
        out["ratio"] = out["ours"]["seconds_per_step"] / out["trl_1_12_0"]["seconds_per_step"]
        out["ratio_peak_rss"] = out["ours"]["peak_rss_mb"] / out["trl_1_12_0"]["peak_rss_mb"]
    out["machine"] = {
        "cpu_cores": os.cpu_count(), "torch_threads": args.threads,
        "torch": torch.__version__, "python": platform.python_version(),
        "processor": _cpu_name(), "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }
    shutil.rmtree(work / "reward_model", ignore_errors=True)  # 0.5 GB; the logs stay
    out["logs"] = str(work)
    print(json.dumps(out, indent=1))


def memory_comparison(setup: dict, work: Path, threads: int) -> dict:
    """Peak RSS of ours, full fine-tuning (policy, reference, value from the reward model, reward
    model: four networks) against adapter=lora (policy, reference and value on one frozen base;
    the reward model separate), one after the other, each in its own process. `above_baseline`
    subtracts the RSS the process had before loading any weights (the libraries)."""
    out = {"config": {k: v for k, v in setup.items() if k not in ("policy", "reward_model")}
           | {"model": "SmolLM2-135M-Instruct, fp32",
              "full": "separate policy, reference, reward and value models (value from the "
                      "reward model), full fine-tuning",
              "lora": "adapter=lora (rank 16, alpha 32, all linear layers): policy and value "
                      "adapters on one frozen base that is also the reference; the reward "
                      "model separate"}}
    for kind, adapter in (("full", "none"), ("lora", "lora")):
        path = work / f"setup_{kind}.json"
        path.write_text(json.dumps({**setup, "adapter": adapter}, indent=1))
        worker = Worker(kind, [sys.executable, __file__, "--worker", str(path)],
                        work / f"{kind}.log", threads)
        ready = worker.read("ready")
        steps = [worker.step() for _ in range(setup["steps"] + 1)]
        result = summary(steps[1:], steps[0], worker.finish(), ready)
        result["peak_above_baseline_mb"] = round(
            result["peak_rss_mb"] - ready["rss_before_models_mb"], 1)
        out[kind] = result
    shutil.rmtree(work / "reward_model", ignore_errors=True)
    out["ratio_peak_rss"] = out["lora"]["peak_rss_mb"] / out["full"]["peak_rss_mb"]
    out["ratio_peak_above_baseline"] = (out["lora"]["peak_above_baseline_mb"]
                                        / out["full"]["peak_above_baseline_mb"])
    out["logs"] = str(work)
    return out


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
