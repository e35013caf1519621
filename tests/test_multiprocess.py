"""The instructgpt recipe under hardware=multi_gpu with 2 processes on the CPU (DDP over gloo),
through the command line: each stage is launched with accelerate in 2 processes, the ranks
agree on every metric and on their final weights, the weights rank 0 saved are those weights,
only rank 0 writes into the run directory, and summary.json is complete.

Each process writes a diagnostics record (FRAMEWORK_RANK_RECORDS, see
framework/common/distributed.py): its metrics, a digest of its final weights, and the files
it opened for writing in the run directory (Python-level writes: JSON, configs, tokenizers;
safetensors and torch.save write from native code and are not seen)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from framework.common.distributed import RECORDS_ENV, weights_digest
from pipeline_runs import TINY_INSTRUCTGPT

TRAINED = ("sft", "reward_model", "rl")
STAGES = TRAINED + ("evaluate",)  # evaluate: each rank samples its share of the prompts
TINY = TINY_INSTRUCTGPT


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("multiprocess")
    run_dir, records = root / "run", root / "records"
    env = {**os.environ, RECORDS_ENV: str(records), "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "framework", "+recipe=instructgpt", f"hydra.run.dir={run_dir}",
         f"model.name_or_path={tiny_model_dir}", "hardware=multi_gpu",
         "hardware.num_processes=2", "hardware.use_cpu=true", *TINY],
        cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return run_dir, records, proc.stdout + proc.stderr


def ranks(records, stage):
    return [json.loads((records / f"{stage}.rank{r}.json").read_text()) for r in (0, 1)]


def test_each_stage_is_launched_in_two_processes(two_process_run):
    run_dir, records, log = two_process_run
    for stage in STAGES:
        assert f"stage {stage}: launching 2 process(es)" in log
        assert [(r["rank"], r["world_size"]) for r in ranks(records, stage)] == [(0, 2), (1, 2)]


def test_ranks_agree_on_metrics_and_final_weights(two_process_run):
    run_dir, records, _ = two_process_run
    summary = json.loads((run_dir / "summary.json").read_text())
    for stage in STAGES:
        zero, one = ranks(records, stage)
        assert zero["metrics"] == one["metrics"], stage  # losses included
        assert zero["metrics"] == summary["stages"][stage]["metrics"], stage
        if stage in TRAINED:
            key = "weights.policy" if stage == "rl" else "weights.model"
            assert zero[key] == one[key], stage
    # 3 prompts x 2 samples, split over the ranks and gathered: the whole table on each
    assert summary["stages"]["evaluate"]["metrics"]["win_rate"]["rl"]["wins"] + \
        summary["stages"]["evaluate"]["metrics"]["win_rate"]["rl"]["ties"] + \
        summary["stages"]["evaluate"]["metrics"]["win_rate"]["rl"]["losses"] == 6
    # 2 steps of 2 rows per process: the SFT stage saw 4 rows a step
    assert summary["stages"]["sft"]["metrics"]["train_steps"] == 2


def test_saved_weights_are_the_trained_ones(two_process_run):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    run_dir, records, _ = two_process_run
    loaders = {"sft": (AutoModelForCausalLM, "sft/model", "weights.model"),
               "reward_model": (AutoModelForSequenceClassification, "reward_model/model",
                                "weights.model"),
               "rl": (AutoModelForCausalLM, "rl/policy", "weights.policy")}
    for stage, (cls, folder, key) in loaders.items():
        saved = weights_digest(cls.from_pretrained(run_dir / folder))
        assert saved == ranks(records, stage)[1][key], stage


def test_only_rank_zero_writes_into_the_run_directory(two_process_run):
    _, records, _ = two_process_run
    for stage in STAGES:
        zero, one = ranks(records, stage)
        assert one["writes"] == [], stage
        written = "/evaluation.json" if stage == "evaluate" else "/config.json"
        assert any(w.endswith(written) for w in zero["writes"]), stage  # the audit works
    assert {"rl/eval_before.json", "rl/eval_after.json",
            "rl/reward_calibration.json"} <= set(ranks(records, "rl")[0]["writes"])


def test_summary_is_complete(two_process_run):
    run_dir, _, _ = two_process_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert list(summary["stages"]) == list(STAGES)
    for stage, entry in summary["stages"].items():
        assert entry["status"] == "done" and entry["metrics"], stage
        for location in entry["artifacts"].values():
            assert (run_dir / location / "config.json").exists(), stage
        manifest = json.loads((run_dir / stage / "manifest.json").read_text())
        assert manifest["status"] == "done" and manifest["metrics"] == entry["metrics"]
    rl = summary["stages"]["rl"]["metrics"]
    assert rl["eval_prompts"] == 4 and rl["train_steps"] == 2
    assert all(isinstance(rl[k], float) for k in ("reward_before", "reward_after", "kl"))


@pytest.mark.slow  # about 25 s on a quiet 2-core machine: one more launch
def test_an_error_in_the_processes_fails_the_run_as_in_one_process(tmp_path, tiny_model_dir):
    """A DataError raised in the launched processes reaches the command as a DataError: exit
    status 2, the message, the stage recorded as failed, later stages not started."""
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "framework", "+recipe=instructgpt", f"hydra.run.dir={run_dir}",
         f"model.name_or_path={tiny_model_dir}", "hardware=multi_gpu",
         "hardware.num_processes=2", "hardware.use_cpu=true",
         "stages.sft.params.args.max_length=4"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert ("[framework][ERROR] - stages.sft.inputs.data: 117 of 117 train rows have no response "
            "tokens left after truncation to max_length=4") in proc.stdout + proc.stderr
    manifest = json.loads((run_dir / "sft" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["error"].startswith("DataError: ")
    assert not (run_dir / "reward_model").exists()
