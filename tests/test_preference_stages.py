"""The offline preference stages, DPO and KTO (trl.DPOTrainer, trl.KTOTrainer), on the tiny
model: pair and label counts by hand, DPO's first loss at ln 2, learning, LoRA, resume, and
bad input named with its place."""

from __future__ import annotations

import json
import math
import shutil

import datasets
import pytest
from omegaconf import OmegaConf

from framework.errors import ConfigError
from framework.pipeline.plan import build_plan
from framework.pipeline.runner import run_pipeline
from framework.pipeline.schema import RootConfig
from framework_plugins.stages.kto.labels import LabelRule, from_comparisons, from_feedback

pytestmark = pytest.mark.usefixtures("one_thread")

RESPONSES = ["Apple {i}.", "Pear is nice.", "No.", "Hmm"]  # best first


def rankings(path, prompts=8):
    path.write_text("".join(json.dumps({"prompt": f"Pick a fruit ({i}).",
                                        "responses": [r.format(i=i) for r in RESPONSES]}) + "\n"
                            for i in range(prompts)))
    return path


def stage_config(tmp_path, model_dir, plugin, data, kind="comparisons", eval_fraction=0.25,
                 params=None, **args):
    args = {"max_steps": 6, "per_device_train_batch_size": 4, "learning_rate": 1e-3,
            "logging_steps": 1, "max_length": 64, **args}
    return OmegaConf.merge(OmegaConf.structured(RootConfig), {
        "model": {"name_or_path": str(model_dir)},
        "data": {"d": {"kind": kind, "path": str(data), "eval_fraction": eval_fraction}},
        "stages": {"s": {"plugin": plugin, "inputs": {"model": "model", "data": "data.d"},
                         "params": {"args": args, **(params or {})}}}})


def test_dpo_starts_at_ln2_and_learns_the_preferences(tmp_path, tiny_model_dir):
    cfg = stage_config(tmp_path, tiny_model_dir, "dpo", rankings(tmp_path / "r.jsonl"))
    run_dir = tmp_path / "run"
    metrics = run_pipeline(cfg, run_dir, "t")["stages"]["s"]["metrics"]
    # 8 prompts of 4 ranked responses: 6 pairs each; 2 prompts (whole) held out
    assert (metrics["train_pairs"], metrics["eval_pairs"]) == (36, 12)
    assert metrics["train_steps"] == 6
    state = json.loads(next((run_dir / "s" / "checkpoints").glob("checkpoint-6")).joinpath(
        "trainer_state.json").read_text())
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    # policy == reference at the first step: every margin is 0, the loss -log sigmoid(0)
    assert losses[0] == pytest.approx(math.log(2), abs=1e-4)
    assert metrics["train_loss"] < 0.65 and metrics["eval_loss"] < math.log(2)
    assert metrics["eval_reward_margin"] > 0 and metrics["eval_reward_accuracy"] > 0.5
    assert (run_dir / "s" / "model" / "model.safetensors").exists()


def test_dpo_with_lora_trains_an_adapter(tmp_path, tiny_model_dir):
    cfg = stage_config(tmp_path, tiny_model_dir, "dpo", rankings(tmp_path / "r.jsonl"),
                       max_steps=3)
    cfg.adapter = OmegaConf.merge(cfg.adapter, {"kind": "lora", "rank": 4, "alpha": 8})
    summary = run_pipeline(cfg, tmp_path / "run", "t")["stages"]["s"]
    assert summary["metrics"]["train_steps"] == 3
    assert summary["metrics"]["eval_reward_margin"] > 0
    assert (tmp_path / "run" / "s" / "model" / "adapter_model.safetensors").exists()


def test_dpo_killed_after_a_checkpoint_resumes_to_the_uninterrupted_result(
        tmp_path, tiny_model_dir, caplog):
    data = rankings(tmp_path / "r.jsonl")

    def cfg():
        return stage_config(tmp_path, tiny_model_dir, "dpo", data, max_steps=4, save_steps=2)

    whole = run_pipeline(cfg(), tmp_path / "whole", "t")["stages"]["s"]["metrics"]
    run_dir = tmp_path / "run"
    run_pipeline(cfg(), run_dir, "t")
    manifest = json.loads((run_dir / "s" / "manifest.json").read_text())
    (run_dir / "s" / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    shutil.rmtree(run_dir / "s" / "model")  # as if killed after step 2's checkpoint
    shutil.rmtree(run_dir / "s" / "checkpoints" / "checkpoint-4")
    with caplog.at_level("INFO"):
        again = run_pipeline(cfg(), run_dir, "t")["stages"]["s"]["metrics"]
    assert f"resuming from {run_dir / 's' / 'checkpoints' / 'checkpoint-2'}" in caplog.text
    assert again["train_steps"] == whole["train_steps"] == 4
    assert again["eval_loss"] == pytest.approx(whole["eval_loss"], rel=1e-5)


def pairs_of(*groups):
    """Pairs (prompt, chosen, rejected, group) from rankings, best first, one group each."""
    rows = {"prompt": [], "chosen": [], "rejected": [], "group": []}
    for g, ranking in enumerate(groups):
        for a in range(len(ranking)):
            for b in range(a + 1, len(ranking)):
                rows["prompt"].append([{"role": "user", "content": f"p{g}"}])
                rows["chosen"].append([{"role": "assistant", "content": ranking[a]}])
                rows["rejected"].append([{"role": "assistant", "content": ranking[b]}])
                rows["group"].append(g)
    return datasets.Dataset.from_dict(rows)


def labels(rows):
    return {(r["prompt"][0]["content"], r["completion"][0]["content"]): r["label"] for r in rows}


def test_kto_labels_from_rankings_follow_the_documented_rule():
    pairs = pairs_of(["a", "b", "c", "d"], ["x", "y"])
    rows, left_out, picked = from_comparisons(pairs, LabelRule())
    # best and worst of the ranking; a pair's chosen and rejected; b and c in between
    assert labels(rows) == {("p0", "a"): True, ("p0", "d"): False, ("p1", "x"): True,
                            ("p1", "y"): False}
    assert left_out == 2
    assert picked == [0, 2, 6, 6]  # the pair each labelled response first appears in
    rows, left_out, _ = from_comparisons(pairs, LabelRule(desirable_top=2))
    # b (beaten by one) is now desirable too; c stays between; y (beaten by one, beating none)
    # would be both, and is left out
    assert labels(rows) == {("p0", "a"): True, ("p0", "b"): True, ("p0", "d"): False,
                            ("p1", "x"): True}
    assert left_out == 2


def test_kto_labels_from_scores_use_the_two_thresholds():
    rows = datasets.Dataset.from_dict({
        "prompt": [[{"role": "user", "content": "p"}]] * 5,
        "completion": [[{"role": "assistant", "content": str(s)}] for s in range(5)],
        "label": [None, None, None, None, False], "score": [7.0, 5.0, 4.0, 3.0, None]})
    out, left_out, picked = from_feedback(rows, LabelRule())
    assert out["label"] == [True, True, False, False] and left_out == 1 and picked == [0, 1, 3, 4]


def test_kto_trains_on_rankings_with_the_counts_of_its_rule(tmp_path, tiny_model_dir):
    cfg = stage_config(tmp_path, tiny_model_dir, "kto", rankings(tmp_path / "r.jsonl"))
    metrics = run_pipeline(cfg, tmp_path / "run", "t")["stages"]["s"]["metrics"]
    # 6 train prompts: best and worst of each labelled, 2 left out; 2 eval prompts alike
    assert (metrics["train_rows"], metrics["desirable"], metrics["eval_rows"]) == (12, 6, 4)
    assert metrics["left_out"] == 2 * 6 + 2 * 2
    assert metrics["train_steps"] == 6 and metrics["eval_reward_margin"] > 0
    assert math.isfinite(metrics["train_loss"]) and "eval_kl" in metrics


def test_kto_reads_labelled_feedback_as_llama_factory_writes_it(tmp_path, tiny_model_dir):
    rows = [{"messages": [{"role": "user", "content": f"Q{i}?"},
                          {"role": "assistant", "content": f"Answer {i}."}], "label": i % 2 == 0}
            for i in range(8)]
    data = tmp_path / "kto.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = stage_config(tmp_path, tiny_model_dir, "kto", data, kind="feedback", eval_fraction=0,
                       max_steps=2)
    metrics = run_pipeline(cfg, tmp_path / "run", "t")["stages"]["s"]["metrics"]
    assert (metrics["train_rows"], metrics["desirable"], metrics["left_out"]) == (8, 4, 0)


def test_bad_feedback_rows_and_rules_are_named_at_planning(tmp_path, tiny_model_dir):
    data = tmp_path / "kto.jsonl"
    data.write_text(json.dumps({"prompt": "Q?", "completion": "A.", "label": "yes"}) + "\n")
    with pytest.raises(ConfigError, match=r"row 0.*label.*must be true or false, got 'yes'"):
        build_plan(stage_config(tmp_path, tiny_model_dir, "kto", data, kind="feedback",
                                eval_fraction=0))
    data.write_text(json.dumps({"prompt": "Q?", "completion": "A.", "score": 9}) + "\n")
    with pytest.raises(ConfigError, match=r"score.*must be a number from 1 to 7, got 9"):
        build_plan(stage_config(tmp_path, tiny_model_dir, "kto", data, kind="feedback",
                                eval_fraction=0))
    cfg = stage_config(tmp_path, tiny_model_dir, "kto", rankings(tmp_path / "r.jsonl"),
                       params={"labels": {"desirable_top": 0, "undesirable_max_score": 6}})
    with pytest.raises(ConfigError) as err:
        build_plan(cfg)
    assert "stages.s.params.labels.desirable_top: must be >= 1, got 0." in err.value.problems
    assert any(p.startswith("stages.s.params.labels: undesirable_max_score=6") for p in
               err.value.problems)
    cfg = stage_config(tmp_path, tiny_model_dir, "dpo", rankings(tmp_path / "r.jsonl"),
                       betta=0.1)
    with pytest.raises(ConfigError, match=r"stages\.s\.params\.args\.betta"):
        build_plan(cfg)


def test_kto_needs_both_kinds_of_labels(tmp_path, tiny_model_dir):
    data = tmp_path / "kto.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Q{i}?", "completion": "A.", "label": True})
                            + "\n" for i in range(4)))
    cfg = stage_config(tmp_path, tiny_model_dir, "kto", data, kind="feedback", eval_fraction=0)
    with pytest.raises(ConfigError, match=r"stages\.s\.inputs\.data: the training rows have no "
                                          r"undesirable response \(4 desirable, 0 undesirable\)"):
        run_pipeline(cfg, tmp_path / "run", "t")
