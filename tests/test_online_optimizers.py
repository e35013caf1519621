"""GRPO and RLOO (trl.GRPOTrainer, trl.RLOOTrainer) as the RL stage's optimizers, on the tiny
model: the reward-source adapter against direct scoring, short runs with and without LoRA
(the stage's before/after scorers unchanged), resume, and bad configs named by path."""

from __future__ import annotations

import json
import shutil

import pytest
from omegaconf import OmegaConf

from framework.errors import ConfigError
from framework.pipeline.plan import build_plan
from framework.pipeline.runner import run_pipeline
from framework.pipeline.schema import RootConfig

pytestmark = pytest.mark.usefixtures("one_thread")

CHARS = "tests.test_online_optimizers:characters"


def characters(prompt: str, response: str) -> float:
    """A dense reward even for a random model's text: the response's length in characters."""
    return float(len(response))


def rl_config(tmp_path, model_dir, optimizer, **params):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Tell me about topic {i}."}) + "\n"
                               for i in range(16)))
    params = {"steps": 3, "prompts_per_step": 2, "num_generations": 4, "max_new_tokens": 8,
              "learning_rate": 1e-3, "save_every": 1, **params}
    return OmegaConf.merge(OmegaConf.structured(RootConfig), {
        "model": {"name_or_path": str(model_dir)},
        "data": {"p": {"kind": "prompts", "path": str(prompts), "eval_fraction": 0.25}},
        "stages": {"rl": {"plugin": "rl", "inputs": {"policy": "model", "prompts": "data.p"},
                          "params": {
                              "optimizer": {"name": optimizer, "params": params},
                              "reward": {"name": "function", "params": {"function": CHARS}},
                              "evaluation": {"num_prompts": 4, "max_new_tokens": 8,
                                             "batch_size": 4}}}}})


def test_the_trl_reward_function_scores_as_the_source_does():
    from framework_plugins.optimizers.trl_online.rewards import TRLRewardFunction
    from framework_plugins.reward_sources.function import FunctionReward

    source = FunctionReward(FunctionReward.parse_config({"function": CHARS}, "reward"))
    source.setup({})
    prompts = [[{"role": "user", "content": "Hi?"}],
               [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Yes?"}]]
    responses = ["Hello there.", "No"]
    adapter = TRLRewardFunction(source)
    completions = [[{"role": "assistant", "content": r}] for r in responses]
    assert adapter(prompts=prompts, completions=completions, completion_ids=[[1], [2]]) == \
        source.score(prompts, responses) == [12.0, 2.0]
    assert adapter(prompts=prompts, completions=responses) == [12.0, 2.0]  # plain-text form
    assert adapter.__name__ == "reward"


@pytest.mark.parametrize("optimizer", ["grpo", "rloo"])
def test_a_short_run_trains_and_the_stage_reports_before_and_after(tmp_path, tiny_model_dir,
                                                                  optimizer):
    run_dir = tmp_path / "run"
    metrics = run_pipeline(rl_config(tmp_path, tiny_model_dir, optimizer), run_dir,
                           "t")["stages"]["rl"]["metrics"]
    assert metrics["train_steps"] == 3
    assert metrics["reward_before"] is not None and metrics["reward_after"] is not None
    assert metrics["kl"] is not None and metrics["train_response_length_last"] <= 8
    assert (run_dir / "rl" / "policy" / "model.safetensors").exists()
    state = json.loads((run_dir / "rl" / "checkpoints" / "checkpoint-3" /
                        "trainer_state.json").read_text())
    assert [e["reward"] for e in state["log_history"] if "reward" in e]  # TRL scored with ours


@pytest.mark.parametrize("optimizer", ["grpo", "rloo"])
def test_with_lora_the_policy_is_an_adapter(tmp_path, tiny_model_dir, optimizer):
    cfg = rl_config(tmp_path, tiny_model_dir, optimizer, steps=2)
    cfg.adapter = OmegaConf.merge(cfg.adapter, {"kind": "lora", "rank": 4, "alpha": 8})
    run_dir = tmp_path / "run"
    metrics = run_pipeline(cfg, run_dir, "t")["stages"]["rl"]["metrics"]
    assert metrics["train_steps"] == 2 and metrics["reward_after"] is not None
    assert (run_dir / "rl" / "policy" / "adapter_model.safetensors").exists()


def test_a_killed_run_resumes_from_its_checkpoint(tmp_path, tiny_model_dir, caplog):
    run_dir = tmp_path / "run"
    run_pipeline(rl_config(tmp_path, tiny_model_dir, "grpo"), run_dir, "t")
    manifest = json.loads((run_dir / "rl" / "manifest.json").read_text())
    (run_dir / "rl" / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    shutil.rmtree(run_dir / "rl" / "policy")  # as if killed after step 2's checkpoint
    shutil.rmtree(run_dir / "rl" / "checkpoints" / "checkpoint-3")
    with caplog.at_level("INFO"):
        metrics = run_pipeline(rl_config(tmp_path, tiny_model_dir, "grpo"), run_dir,
                               "t")["stages"]["rl"]["metrics"]
    assert f"resuming from {run_dir / 'rl' / 'checkpoints' / 'checkpoint-2'}" in caplog.text
    assert metrics["train_steps"] == 3
    assert not (run_dir / "rl" / "checkpoints" / "checkpoint-4").exists()


def test_bad_settings_are_named_with_their_path(tmp_path, tiny_model_dir):
    where = "stages.rl.params.optimizer.params"
    for params, message in [
            ({"num_generations": 1}, f"{where}.num_generations: the advantage compares"),
            ({"steps": 0}, f"{where}.steps: must be >= 1, got 0."),
            ({"args": {"epsilonn": 0.2}}, f"{where}.args.epsilonn"),
            ({"args": {"beta": 0.1}}, f"{where}.args.beta: set by the optimizer's own params")]:
        with pytest.raises(ConfigError) as err:
            build_plan(rl_config(tmp_path, tiny_model_dir, "rloo", **params))
        assert message in str(err.value), (params, str(err.value))
