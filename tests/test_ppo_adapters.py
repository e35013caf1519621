"""PPO with `adapter=lora` / `adapter=qlora`: one frozen base serves the policy (base + policy
adapter), the reference (adapters disabled) and the value model (base + value adapter + head).
The RL stage's artifact is the policy adapter on the starting policy; a stopped run resumes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from framework import rollout as R
from framework.artifacts import MODEL
from framework.models import ModelConfig, load_tokenizer
from framework.models.adapter_models import CAUSAL_LM, load_for_training, load_merged
from framework.models.adapters import AdapterConfig
from framework_plugins.optimizers.ppo import PPOOptimizer
from framework_plugins.optimizers.ppo.config import PPOConfig
from framework_plugins.optimizers.ppo.data import make_prompt
from framework_plugins.optimizers.ppo.trainer import PPOInputs, PPOTrainer
from test_ppo_training import SMALL, TOPICS, Repetition, _job

pytest.importorskip("peft")
pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def adapter(kind: str) -> AdapterConfig:
    if kind == "qlora":
        pytest.importorskip("bitsandbytes")
    return AdapterConfig(kind=kind, rank=4, alpha=8, dropout=0.0)


def config(steps: int) -> PPOConfig:
    return PPOConfig(steps=steps, **{**SMALL, "learning_rate": 1e-3})


def adapter_weights(location) -> dict:
    return load_file(Path(location) / "adapter_model.safetensors")


@pytest.mark.parametrize("kind", ["lora", "qlora"])
def test_ppo_trains_a_policy_adapter_and_resumes_it(kind, tiny_model_dir, tmp_path):
    whole = _job(tiny_model_dir, tmp_path, "whole", adapter=adapter(kind))
    policy, metrics = PPOOptimizer(config(3)).train(whole)
    assert metrics["steps"] == 3 and policy.kind == MODEL
    assert policy.meta == {"adapter": kind, "base": str(tiny_model_dir)}
    weights = adapter_weights(policy.location)
    assert weights and all("lora_" in k for k in weights)  # the adapter only: no base, no critic
    assert any(w.abs().sum() > 0 for k, w in weights.items() if "lora_B" in k)  # it trained
    # The artifact loads as base + adapter, merged (what the RL stage's "after" evaluation does)
    merged = load_merged(policy, ModelConfig(), CAUSAL_LM)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged.state_dict()[q], base.state_dict()[q])

    # Stopped after step 1, resumed to 3: the same adapter as the uninterrupted run (on CPU,
    # bit for bit), with both adapters, the value head and the optimizers restored.
    parts = _job(tiny_model_dir, tmp_path, "parts", adapter=adapter(kind))
    PPOOptimizer(config(1)).train(parts)
    saved = parts.output_dir / "checkpoints" / "step-000001"
    assert {p.name for p in (saved / "policy").iterdir()} >= {"policy", "value"}
    resumed, resumed_metrics = PPOOptimizer(config(3)).train(parts)
    assert resumed_metrics["score"] == pytest.approx(metrics["score"])
    again = adapter_weights(resumed.location)
    assert again.keys() == weights.keys()
    assert all(torch.equal(again[k], weights[k]) for k in weights)


@pytest.mark.parametrize("kind", ["lora", "qlora"])
def test_reference_log_probs_come_from_the_base_with_adapters_off(kind, tiny_model_dir, tmp_path):
    """After training moved the policy adapter, the reference is still the starting policy:
    its log-probs equal those of a base loaded separately (quantized the same way for qlora)."""
    tokenizer = load_tokenizer(str(tiny_model_dir))
    trainer = PPOTrainer(
        config(2), PPOInputs(policy_path=str(tiny_model_dir), tokenizer=tokenizer,
        prompts=[make_prompt(f"Tell me about {t}.", "test") for t in TOPICS],
        reward=Repetition(tokenizer), output_dir=tmp_path, seed=0, adapter=adapter(kind),
        model=ModelConfig()))
    assert trainer.reference is None  # no second copy of the weights
    trainer.train()
    batch = trainer.make_experience()["rollout"]
    separate, _ = load_for_training(str(tiny_model_dir), CAUSAL_LM, ModelConfig(), adapter(kind))
    with torch.no_grad():
        expected = R.response_logprobs(separate.eval(), batch, trainer.cfg.temperature)
        policy = trainer.forward_pass(batch)["logprobs"]
    mask = batch.response_mask.bool()
    torch.testing.assert_close(trainer.reference_logprobs(batch)[mask], expected[mask])
    assert (policy - expected)[mask].abs().max() > 1e-3  # while the policy has moved


def test_one_update_moves_the_adapter_policy_towards_positive_advantages(tiny_model_dir, tmp_path):
    """The adapter path's PPO update goes the right way: log-probs rise where the advantage is
    positive and fall where it is negative (sum of advantage x change > 0), and the frozen base
    does not move."""
    tokenizer = load_tokenizer(str(tiny_model_dir))
    cfg = PPOConfig(steps=1, batch_size=8, num_minibatches=1, ppo_epochs=1, max_new_tokens=8,
                    temperature=0.2, learning_rate=1e-3, save_every=0, sample_every=0)
    trainer = PPOTrainer(
        cfg, PPOInputs(policy_path=str(tiny_model_dir), tokenizer=tokenizer,
        prompts=[make_prompt(f"Say something about {t}.", "test") for t in TOPICS],
        reward=Repetition(tokenizer), output_dir=tmp_path, seed=0, adapter=adapter("lora"),
        model=ModelConfig()))
    frozen = {n: p.detach().clone() for n, p in trainer.shared.named_parameters()
              if not p.requires_grad}
    exp = trainer.make_experience()
    exp.pop("stats")
    batch, mask = exp["rollout"], exp["rollout"].response_mask
    with torch.no_grad():
        before = trainer.forward_pass(batch)["logprobs"]
    trainer.update(exp)
    with torch.no_grad():
        after = trainer.forward_pass(batch)["logprobs"]
    change = (after - before) * mask
    assert (exp["advantages"] * change).sum() > 0.5  # seeded: about 3.7
    assert all(torch.equal(p, frozen[n]) for n, p in trainer.shared.named_parameters()
               if n in frozen)
