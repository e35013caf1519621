"""The RL stage: wiring checked before weights load, and a real short run through the pipeline."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from framework.errors import ConfigError
from framework.pipeline.plan import build_plan
from framework.pipeline.runner import run_pipeline
from framework.pipeline.schema import RootConfig

# Plans with fake hub ids that never load (conftest.hub_cache).
pytestmark = pytest.mark.usefixtures("hub_cache")

TOKEN_WORD = "tests.test_rl_stage:count_the"


def count_the(prompt: str, response: str) -> float:
    return float(response.lower().split().count("the"))


def rl_config(tmp_path, model_dir, *, rl_params=None, inputs=None, prompts_eval=0.25):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Tell me about topic {i}."}) + "\n" for i in range(16)))
    text = tmp_path / "text.jsonl"
    text.write_text("".join(json.dumps({"text": f"Paragraph number {i} about the weather."}) + "\n" for i in range(8)))
    params = {
        "optimizer": {"name": "ppo", "params": {"steps": 2, "batch_size": 4, "num_minibatches": 2,
                                                "ppo_epochs": 1, "max_new_tokens": 6,
                                                "learning_rate": 1e-4, "sample_every": 0}},
        "reward": {"name": "function", "params": {"function": TOKEN_WORD}},
        "report": {"length": {"name": "function", "params": {"function": "tests.test_rl_stage:words"}}},
        "evaluation": {"num_prompts": 4, "max_new_tokens": 6, "batch_size": 4},
    }
    for key, value in (rl_params or {}).items():
        params[key] = value
    node = {
        "model": {"name_or_path": str(model_dir)},
        "data": {"prompts": {"kind": "prompts", "path": str(prompts), "eval_fraction": prompts_eval},
                 "text": {"kind": "text", "path": str(text)}},
        "stages": {"rl": {"plugin": "rl", "inputs": inputs or {"policy": "model", "prompts": "data.prompts"},
                          "params": params}},
    }
    return OmegaConf.merge(OmegaConf.structured(RootConfig), node)


def words(prompt: str, response: str) -> float:
    return float(len(response.split()))


def problems(cfg) -> str:
    with pytest.raises(ConfigError) as err:
        build_plan(cfg)
    return "\n".join(err.value.problems)


def test_nested_plugin_errors_name_their_config_path(tmp_path):
    cfg = rl_config(tmp_path, "some/model", rl_params={"optimizer": {"name": "ppx"}})
    assert "stages.rl.params.optimizer.name: Unknown optimizer plugin 'ppx'. Did you mean 'ppo'?" in problems(cfg)
    cfg = rl_config(tmp_path, "some/model", rl_params={"optimizer": {"name": "ppo", "params": {"stepz": 3}}})
    assert "stages.rl.params.optimizer.params.stepz" in problems(cfg)
    cfg = rl_config(tmp_path, "some/model", rl_params={"optimizer": {"name": "ppo", "params": {"batch_size": 6, "num_minibatches": 4}}})
    assert "stages.rl.params.optimizer.params.batch_size=6 is not divisible by num_minibatches=4" in problems(cfg)
    cfg = rl_config(tmp_path, "some/model", rl_params={"reward": {"name": "function", "params": {"function": "nowhere.mod:f"}}})
    assert "stages.rl.params.reward.params.function: cannot import 'nowhere.mod:f'" in problems(cfg)


def test_inputs_follow_the_params(tmp_path):
    # ptx on: pretraining text becomes required
    cfg = rl_config(tmp_path, "some/model", rl_params={"optimizer": {"name": "ppo", "params": {"ptx_coef": 1.0}}})
    assert "stages.rl.inputs.pretraining: required input is not wired" in problems(cfg)
    # ptx off: wiring pretraining text would silently do nothing, so it is an error
    cfg = rl_config(tmp_path, "some/model", inputs={"policy": "model", "prompts": "data.prompts", "pretraining": "data.text"})
    assert "stages.rl.inputs.pretraining: wired, but unused" in problems(cfg)
    assert "ptx_coef > 0" in problems(cfg)
    # a reward-model reward source needs a reward model
    cfg = rl_config(tmp_path, "some/model", rl_params={"reward": {"name": "reward_model"}})
    assert "stages.rl.inputs.reward_model: required input is not wired" in problems(cfg)


def test_held_out_prompts_are_required_for_the_report(tmp_path):
    cfg = rl_config(tmp_path, "some/model", prompts_eval=0.0)
    assert "reward_before/reward_after are measured on held-out prompts" in problems(cfg)


def test_short_real_run_reports_before_after_and_kl(tmp_path, tiny_model_dir):
    cfg = rl_config(tmp_path, tiny_model_dir)
    summary = run_pipeline(cfg, tmp_path / "run", "test")
    metrics = summary["stages"]["rl"]["metrics"]
    for key in ("reward_before", "reward_after", "length_before", "length_after", "kl"):
        assert isinstance(metrics[key], float), key
    assert metrics["eval_prompts"] == 4 and metrics["train_steps"] == 2
    # the starting policy generates up to 6 tokens; its word count is a real measurement
    assert 0 < metrics["length_before"] <= 12
    policy = summary["stages"]["rl"]["artifacts"]["model"]
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(policy.location)
    before = json.loads((tmp_path / "run" / "rl" / "eval_before.json").read_text())
    assert before["reward"] == metrics["reward_before"] and len(before["samples"]) == 4
    # the same command again reuses the finished stage
    again = run_pipeline(rl_config(tmp_path, tiny_model_dir), tmp_path / "run", "test")
    assert again["stages"]["rl"]["status"] == "skipped"
