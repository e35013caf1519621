"""A non-finite loss, gradient, reward or KL (or a KL beyond max_kl) stops training with
TrainingDiverged naming the step and the quantity, and the last checkpoint on disk is the last
good state: nothing after the bad step is saved."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from framework.artifacts import MODEL, Artifact
from framework.errors import ConfigError, TrainingDiverged
from framework.models import ModelConfig, load_tokenizer
from framework.reward_source import RewardSource
from framework.stage import StageContext
from framework_plugins.optimizers.ppo import checkpoint
from framework_plugins.optimizers.ppo.config import PPOConfig
from framework_plugins.optimizers.ppo.data import make_prompt
from framework_plugins.optimizers.ppo.trainer import PPOInputs, PPOTrainer

TOPICS = ["cats", "dogs", "rain", "the sea"]


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def test_sft_loss_going_nan_stops_before_saving_the_bad_state(tmp_path, tiny_model_dir, monkeypatch):
    from trl import SFTTrainer

    from framework.data import DataSourceConfig
    from framework.data.config import data_artifact
    from framework_plugins.stages.sft import SFTStage, SFTStageConfig

    original = SFTTrainer.compute_loss

    def nan_from_step_3(self, *args, **kwargs):  # the third optimizer step's loss is NaN
        out = original(self, *args, **kwargs)
        if self.state.global_step < 2:
            return out
        return (out[0] * math.nan, out[1]) if isinstance(out, tuple) else out * math.nan

    monkeypatch.setattr(SFTTrainer, "compute_loss", nan_from_step_3)
    demos = tmp_path / "demos.jsonl"
    demos.write_text("".join(json.dumps({"prompt": f"Say {i}.", "completion": f"{i}."}) + "\n"
                             for i in range(8)))
    stage = SFTStage(SFTStageConfig(args={
        "max_steps": 6, "save_steps": 1, "per_device_train_batch_size": 2, "logging_steps": 1,
        "gradient_checkpointing": False}))
    ctx = StageContext(name="sft", output_dir=tmp_path / "sft", run_dir=tmp_path, seed=0,
                       model=ModelConfig(name_or_path=str(tiny_model_dir)))
    inputs = {"model": Artifact(MODEL, str(tiny_model_dir)),
              "data": data_artifact(DataSourceConfig(path=str(demos)))}
    with pytest.raises(TrainingDiverged, match=(
            r"^stages\.sft: training diverged at step 3: the gradient norm is nan\. The last good "
            r"checkpoint, checkpoint-2, is kept at \S+checkpoint-2; nothing from step 3 on was "
            r"saved\. Lower stages\.sft\.params\.args\.learning_rate")) as caught:
        stage.run(inputs, ctx)
    assert caught.value.step == 3 and caught.value.quantity == "gradient norm"
    saved = sorted(p.name for p in (tmp_path / "sft" / "checkpoints").glob("checkpoint-*"))
    assert saved == ["checkpoint-1", "checkpoint-2"]
    assert not (tmp_path / "sft" / "model").exists()  # no final model from a diverged run
    from safetensors.torch import load_file

    weights = load_file(tmp_path / "sft" / "checkpoints" / "checkpoint-2" / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


class NanAtCall(RewardSource):
    """Scores 1.0, except NaN from its `bad_call`-th call on (one call per PPO step)."""

    def __init__(self, bad_call: int):
        super().__init__(None)
        self.calls, self.bad_call = 0, bad_call

    def score(self, prompts, responses):
        self.calls += 1
        return [math.nan if self.calls >= self.bad_call else 1.0 for _ in responses]


def trainer(tmp_path, model_dir, reward, **config) -> PPOTrainer:
    settings = dict(steps=4, batch_size=4, num_minibatches=1, ppo_epochs=1, max_new_tokens=4,
                    save_every=1, sample_every=0, learning_rate=1e-4)
    return PPOTrainer(
        PPOConfig(**{**settings, **config}), PPOInputs(policy_path=str(model_dir),
        tokenizer=load_tokenizer(str(model_dir)),
        prompts=[make_prompt(f"Tell me about {t}.", "test") for t in TOPICS],
        reward=reward, output_dir=tmp_path, seed=0))


def test_ppo_nan_reward_names_step_prompts_and_keeps_the_last_good_checkpoint(tmp_path, tiny_model_dir):
    ppo = trainer(tmp_path, tiny_model_dir, NanAtCall(bad_call=2))
    with pytest.raises(TrainingDiverged) as caught:
        ppo.train()
    message = str(caught.value)
    assert message.startswith("PPO diverged at step 2: the reward source NanAtCall returned "
                              "non-finite scores for 4 of 4 responses (prompt -> score: '")
    assert "-> nan" in message
    assert any(f"Tell me about {t}." in message for t in TOPICS)  # the batch's prompts
    assert "The last good checkpoint, step-000001 (step 1), is kept" in message
    assert caught.value.step == 2 and caught.value.quantity == "reward score"
    last = checkpoint.latest(tmp_path / "checkpoints")
    assert last.name == "step-000001"  # step 2 never reached a checkpoint
    assert json.loads((last / "state.json").read_text())["step"] == 1


def test_ppo_stops_when_the_kl_exceeds_max_kl(tmp_path, tiny_model_dir):
    # step 1 samples from the reference itself (KL 0); large steps move the policy far away
    ppo = trainer(tmp_path, tiny_model_dir, NanAtCall(bad_call=10**6), learning_rate=5e-3,
                  max_kl=0.05)
    with pytest.raises(TrainingDiverged) as caught:
        ppo.train()
    bad = caught.value.step
    assert bad >= 2 and caught.value.quantity == "kl"
    assert re.match(
        rf"^PPO diverged at step {bad}: the KL to the reference policy, \S+ nats per response, "
        rf"exceeds max_kl=0\.05 \(batch prompts: \[.*Tell me about .*\]\)\. The last good "
        rf"checkpoint, step-{bad - 1:06d} \(step {bad - 1}\), is kept", str(caught.value))
    # every step before it stayed within max_kl and was checkpointed; the bad one was not
    assert [h["step"] for h in ppo.history] == list(range(1, bad))
    assert all(h["kl"] <= 0.05 for h in ppo.history)  # the per-response estimate may be < 0
    assert checkpoint.latest(tmp_path / "checkpoints").name == f"step-{bad - 1:06d}"


@pytest.mark.parametrize("max_grad_norm", [1.0, 0.0])  # the norm of the clip, or its own
def test_ppo_non_finite_loss_stops_before_the_optimizer_step(tmp_path, tiny_model_dir, monkeypatch,
                                                             max_grad_norm):
    ppo = trainer(tmp_path, tiny_model_dir, NanAtCall(bad_call=10**6), max_grad_norm=max_grad_norm)
    loss = ppo.loss

    def nan_loss_at_step_3(*args, **kwargs):
        value, stats = loss(*args, **kwargs)
        return (value * math.nan if ppo.step == 2 else value), stats

    monkeypatch.setattr(ppo, "loss", nan_loss_at_step_3)
    before = {k: v.clone() for k, v in ppo.policy.state_dict().items()}
    with pytest.raises(TrainingDiverged, match=(
            r"^PPO diverged at step 3: the policy gradient norm is nan before the optimizer step: "
            r"the PPO loss \(or the ptx loss\) was not finite \(batch prompts: \[.*\]\)\. The last "
            r"good checkpoint, step-000002")):
        ppo.train()
    # the optimizer never applied the NaN gradient
    assert all(torch.isfinite(v).all() for v in ppo.policy.state_dict().values())
    assert any(not torch.equal(before[k], v) for k, v in ppo.policy.state_dict().items())
    assert checkpoint.latest(tmp_path / "checkpoints").name == "step-000002"
    # the steps before logged each model's gradient norm (before clipping), finite and > 0
    assert all(0 < h[f"{m}_grad_norm"] < math.inf for h in ppo.history for m in ("policy", "value"))


def test_max_kl_must_be_positive():
    assert PPOConfig(max_kl=0.0).problems() == [
        "max_kl=0.0: must be > 0 nats per response, or null to turn the bound off."]
    assert PPOConfig(max_kl=None).problems() == []
    from framework_plugins.optimizers.ppo import validate

    with pytest.raises(ConfigError, match=r"stages\.rl\.params\.optimizer\.params\.max_kl=-1"):
        validate(PPOConfig(max_kl=-1.0), "stages.rl.params.optimizer.params")


@pytest.mark.parametrize("max_grad_norm, after", [(1.0, 1.0), (0.0, 5.0), (10.0, 5.0)])
def test_ppo_clip_gradients_returns_the_norm_before_clipping(tmp_path, max_grad_norm, after):
    """Gradients of norm 5 (3 and 4): clipped to max_grad_norm when it is smaller, left alone
    at 0 (off) or above; the norm before clipping is returned either way."""
    from types import SimpleNamespace

    from accelerate import Accelerator

    from framework_plugins.optimizers.ppo import guards

    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([4.0])
    fake = SimpleNamespace(trainable={"policy": [a, b]}, accelerator=Accelerator(cpu=True),
                           cfg=SimpleNamespace(max_grad_norm=max_grad_norm))
    assert guards.clip_gradients(fake, "policy") == pytest.approx(5.0)
    assert torch.cat([a.grad, b.grad]).norm().item() == pytest.approx(after, rel=1e-5)
