"""Drives TRL 1.12.0's experimental PPOTrainer for bench_ppo_step.py; run by the TRL venv only.

    /tmp/trl112/bin/python tests/benchmarks/trl_ppo_driver.py SETUP.json

It imports nothing from this repository. The settings come from SETUP.json (written by
bench_ppo_step.py). Steps are timed by a TrainerCallback: TRL's loop has no per-step begin hook,
so `on_step_end` records the end of a step and then blocks until the benchmark sends the next
"go" on stdin; a step is timed from that "go" to its `on_step_end`. One step is one
`update` iteration of PPOTrainer.train(): rollout, reference/value/reward passes, GAE,
`num_ppo_epochs` x `num_mini_batches` optimizer steps, metrics.
Protocol lines on stdout start with "BENCH " and carry one JSON object.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
import tempfile
import time


def emit(**obj):
    print("BENCH " + json.dumps(obj), flush=True)


def wait_go():
    line = sys.stdin.readline()
    if line.strip() != "go":
        sys.exit(0)  # the benchmark closed the pipe or said stop


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main(setup_path: str) -> None:
    setup = json.loads(open(setup_path).read())
    import torch

    torch.set_num_threads(setup["threads"])
    torch.manual_seed(setup["seed"])
    import datasets
    import transformers
    import trl
    from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification,
                              AutoTokenizer, TrainerCallback)
    from trl.experimental.ppo import PPOConfig, PPOTrainer
    from trl.experimental.ppo import ppo_trainer as trl_ppo

    assert trl.__version__ == "1.12.0", trl.__version__

    tokenizer = AutoTokenizer.from_pretrained(setup["policy"], padding_side="left")
    # TRL finds padding by the pad id, so it must differ from EOS (SmolLM2 ships pad = EOS =
    # <|im_end|>, which also closes every chat turn). <|endoftext|> (id 0) is in the vocabulary
    # and never occurs in a chat prompt.
    tokenizer.pad_token = "<|endoftext|>"
    ids = [tokenizer(tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True),
                     add_special_tokens=False)["input_ids"] for m in setup["prompts"]]
    dataset = datasets.Dataset.from_dict({"input_ids": ids})

    policy = AutoModelForCausalLM.from_pretrained(setup["policy"], dtype=torch.float32)
    ref = AutoModelForCausalLM.from_pretrained(setup["policy"], dtype=torch.float32)
    reward = AutoModelForSequenceClassification.from_pretrained(
        setup["reward_model"], num_labels=1, dtype=torch.float32)
    value = AutoModelForSequenceClassification.from_pretrained(
        setup["reward_model"], num_labels=1, dtype=torch.float32)
    # Exactly `new_tokens` tokens: EOS is masked until then (stop_token="eos" below makes the
    # policy's generation_config.eos_token_id the EOS, which min_new_tokens suppresses).
    policy.generation_config.min_new_tokens = setup["new_tokens"]

    steps = setup["steps"] + 1  # a warm-up step, then the timed ones
    out = tempfile.mkdtemp(prefix="trl_ppo_bench_")
    args = PPOConfig(
        output_dir=out, seed=setup["seed"], use_cpu=True, bf16=False, fp16=False,
        gradient_checkpointing=False, report_to="none", save_strategy="no", logging_steps=1,
        disable_tqdm=True, num_sample_generations=0,
        per_device_train_batch_size=setup["batch_size"], gradient_accumulation_steps=1,
        num_mini_batches=setup["num_minibatches"], num_ppo_epochs=setup["ppo_epochs"],
        total_episodes=setup["batch_size"] * steps, learning_rate=setup["learning_rate"],
        response_length=setup["new_tokens"], stop_token="eos", temperature=setup["temperature"],
        kl_coef=setup["kl_coef"], cliprange=0.2, cliprange_value=0.2, vf_coef=0.1, gamma=1.0,
        lam=0.95, missing_eos_penalty=None,
    )

    widths, eos_counts, generation_seconds = [], [], []
    generate = trl_ppo.batch_generation

    def recording_generation(model, queries, *a, **k):  # only observes: response width, EOS
        t0 = time.perf_counter()
        query_responses, logits = generate(model, queries, *a, **k)
        generation_seconds.append(time.perf_counter() - t0)
        response = query_responses[:, queries.shape[1]:]
        widths.append(int(response.shape[1]))
        eos_counts.append(int((response == tokenizer.eos_token_id).sum()))
        return query_responses, logits

    trl_ppo.batch_generation = recording_generation

    class StepClock(TrainerCallback):
        def __init__(self):
            self.start = None
            self.step = 0

        def on_step_end(self, args, state, control, **kwargs):
            seconds = time.perf_counter() - self.start
            emit(event="step", step=self.step, seconds=seconds, response_tokens=widths[-1],
                 eos_in_responses=eos_counts[-1], generation_seconds=generation_seconds[-1],
                 peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                 rss_mb=rss_mb())
            self.step += 1
            if self.step < steps:
                wait_go()
                self.start = time.perf_counter()
            else:  # train()'s end and this process's exit must not overlap ours' timed step
                sys.stdin.readline()  # "finish", once every timed step of both has run
            return control

    clock = StepClock()
    trainer = PPOTrainer(args=args, processing_class=tokenizer, model=policy, ref_model=ref,
                         reward_model=reward, value_model=value, train_dataset=dataset,
                         callbacks=[clock])
    emit(event="ready", rss_mb=rss_mb(), versions={
        "trl": trl.__version__, "transformers": transformers.__version__,
        "torch": torch.__version__, "datasets": datasets.__version__},
        optimizer=type(trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer")
                       else trainer.optimizer).__name__)
    wait_go()
    clock.start = time.perf_counter()
    trainer.train()
    emit(event="done", peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main(sys.argv[1])
