"""PPO end to end on the tiny random Llama: it learns, it resumes exactly, its inputs are checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from framework.artifacts import MODEL, PROMPTS, TEXT, Artifact
from framework.errors import ConfigError
from framework.models import ModelConfig, load_tokenizer
from framework.optimizer import PolicyTrainingJob
from framework.reward_source import RewardSource
from framework_plugins.optimizers.ppo import PPOOptimizer
from framework_plugins.optimizers.ppo.config import PPOConfig
from framework_plugins.optimizers.ppo.data import make_prompt
from framework_plugins.optimizers.ppo.trainer import PPOInputs, PPOTrainer
from framework_plugins.optimizers.ppo.value_model import ValueModel

TOPICS = ["cats", "dogs", "rain", "the sea", "apples", "music", "bikes", "trees"]


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


class Repetition(RewardSource):
    """Share of adjacent response tokens that repeat the previous one (0..1).

    A random tiny Llama with tied embeddings already leans towards repeating its input token
    (its logit is ~|e|^2), so the reward is dense from the start and PPO can sharpen it.
    """

    def __init__(self, tokenizer):
        super().__init__(None)
        self.tokenizer = tokenizer

    def score(self, prompts, responses):
        scores = []
        for response in responses:
            ids = self.tokenizer(response, add_special_tokens=False)["input_ids"]
            scores.append(sum(a == b for a, b in zip(ids, ids[1:])) / max(1, len(ids) - 1))
        return scores


def test_ppo_learns_to_raise_the_reward(tiny_model_dir, tmp_path):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    config = PPOConfig(
        steps=30, batch_size=8, num_minibatches=1, ppo_epochs=4, max_new_tokens=8,
        temperature=0.1, learning_rate=3e-4, value_learning_rate=1e-3, init_kl_coef=0.01,
        save_every=0, sample_every=0,
    )
    trainer = PPOTrainer(
        config, PPOInputs(policy_path=str(tiny_model_dir), tokenizer=tokenizer,
        prompts=[make_prompt(f"Say something about {t}.", "test") for t in TOPICS],
        reward=Repetition(tokenizer), output_dir=tmp_path, seed=0))
    trainer.train()
    scores = [h["score"] for h in trainer.history]
    first, last = sum(scores[:5]) / 5, sum(scores[-5:]) / 5
    # Sampling is over the whole 49k vocabulary of a random model: at temperature 0.1 the
    # repeated token is likely enough for a dense reward. Seeded, this run goes from about 0.41
    # (first 5 steps) to about 0.79 (last 5); demand a clear rise.
    assert last > first + 0.25 and last > 0.6, scores
    kls = [h["kl"] for h in trainer.history]
    assert kls[0] == pytest.approx(0.0, abs=1e-4)  # the policy starts as the reference
    assert kls[-1] > 1.0  # and moved away from it to get there


def _job(tiny_model_dir, tmp_path, out: str, **kwargs) -> PolicyTrainingJob:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps({"prompt": f"Tell me about {t}."}) for t in TOPICS[:6]))
    defaults = dict(
        policy=Artifact(MODEL, str(tiny_model_dir)), prompts=Artifact(PROMPTS, str(prompts)),
        reward=Repetition(load_tokenizer(str(tiny_model_dir))), pretraining=None,
        output_dir=tmp_path / out, seed=3, model=ModelConfig(),
    )
    return PolicyTrainingJob(**{**defaults, **kwargs})


SMALL_BETA = 0.05
SMALL = dict(batch_size=4, num_minibatches=2, ppo_epochs=2, max_new_tokens=4, save_every=0,
             sample_every=1, learning_rate=1e-4, value_learning_rate=1e-3, adaptive_kl=True,
             init_kl_coef=SMALL_BETA)


def _state(out: Path) -> dict:
    return json.loads((out / "checkpoints" / "step-000004" / "state.json").read_text())


def test_resumed_run_matches_the_uninterrupted_one(tiny_model_dir, tmp_path):
    whole = _job(tiny_model_dir, tmp_path, "whole")
    policy, metrics = PPOOptimizer(PPOConfig(steps=4, **SMALL)).train(whole)
    assert metrics["steps"] == 4 and policy.kind == MODEL
    assert (Path(policy.location) / "config.json").exists()
    assert any((whole.output_dir / "tensorboard").iterdir())

    parts = _job(tiny_model_dir, tmp_path, "parts")
    PPOOptimizer(PPOConfig(steps=2, **SMALL)).train(parts)  # "stopped" after step 2
    assert (parts.output_dir / "checkpoints" / "step-000002").is_dir()
    _, resumed_metrics = PPOOptimizer(PPOConfig(steps=4, **SMALL)).train(parts)

    a, b = _state(whole.output_dir), _state(parts.output_dir)
    # 4 steps of 4 prompts over 6 prompts: 16 = 2 passes + 4, so pass 2, index 4.
    assert a["step"] == b["step"] == 4
    assert a["data"] == b["data"] == {"epoch": 2, "index": 4}
    assert a["kl"] == pytest.approx(b["kl"])  # the adaptive beta took the same path
    assert resumed_metrics["score"] == pytest.approx(metrics["score"])
    # On CPU the resumed run is bit-for-bit the uninterrupted one.
    from safetensors.torch import load_file

    wa = load_file(whole.output_dir / "policy" / "model.safetensors")
    wb = load_file(parts.output_dir / "policy" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not torch.equal(wa["model.norm.weight"], torch.ones_like(wa["model.norm.weight"]))

    # The training log (the report's curves) of the resumed run holds all 4 steps, the 2 before
    # the stop restored from the checkpoint, and equals the uninterrupted run's.
    from framework.common import training_log

    log_a, log_b = training_log.read(whole.output_dir), training_log.read(parts.output_dir)
    assert [e["step"] for e in log_a] == [e["step"] for e in log_b] == [1, 2, 3, 4]
    for ea, eb in zip(log_a, log_b):
        assert ea.keys() == eb.keys()
        assert all(ea[k] == pytest.approx(eb[k], rel=1e-5, abs=1e-6) for k in ea)
    # The RLHF objective, by hand: the beta the step's rewards used times its mean KL, and the
    # sum of the shaped per-token rewards equals the penalized score minus that.
    for entry in log_a:
        assert entry["non_score_reward"] == pytest.approx(-entry["beta"] * entry["kl"], abs=1e-6)
        assert entry["rlhf_reward"] == pytest.approx(
            entry["score_with_penalty"] + entry["non_score_reward"], abs=1e-5)
    assert log_a[0]["beta"] == SMALL_BETA  # step 1 used the initial coefficient
    assert log_a[1]["beta"] != SMALL_BETA  # and the adaptive controller moved it after


def test_resume_false_refuses_to_overwrite_a_run(tiny_model_dir, tmp_path):
    job = _job(tiny_model_dir, tmp_path, "run")
    PPOOptimizer(PPOConfig(steps=1, **SMALL)).train(job)
    with pytest.raises(ConfigError, match="resume=false"):
        PPOOptimizer(PPOConfig(steps=2, resume=False, **SMALL)).train(job)


def test_ptx_term_runs_and_its_input_is_required(tiny_model_dir, tmp_path):
    text = tmp_path / "text.jsonl"
    text.write_text("\n".join(json.dumps({"text": f"Plain text number {i}."}) for i in range(5)))
    job = _job(tiny_model_dir, tmp_path, "ptx", pretraining=Artifact(TEXT, str(text)))
    _, metrics = PPOOptimizer(PPOConfig(steps=1, ptx_coef=0.5, **SMALL)).train(job)
    # 0.5 * LM loss of a random model over a 49k vocabulary: about 0.5 * ln(49152) = 5.4
    assert 4.0 < metrics["ptx_loss"] < 7.0
    with pytest.raises(ConfigError, match="ptx_coef=0 would ignore it"):
        PPOOptimizer(PPOConfig(steps=1, **SMALL)).train(job)
    no_text = _job(tiny_model_dir, tmp_path, "noptx")
    with pytest.raises(ConfigError, match="needs pretraining text"):
        PPOOptimizer(PPOConfig(steps=1, ptx_coef=0.5, **SMALL)).train(no_text)


def test_value_model_from_reward_model_copies_the_score_head(tmp_path):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=32,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         num_labels=1, pad_token_id=0)
    torch.manual_seed(0)
    rm = LlamaForSequenceClassification(config)
    rm.save_pretrained(tmp_path / "rm")
    value = ValueModel.from_reward_model(str(tmp_path / "rm"))
    assert torch.equal(value.head.weight, rm.score.weight)
    assert torch.equal(value.head.bias, torch.zeros(1))  # Llama's score head has no bias
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        values = value(ids, attention_mask=torch.ones_like(ids))
        # the RM's score of a sequence is its value at the last token
        assert torch.allclose(values[0, -1], rm(ids).logits[0, 0], atol=1e-5)
    assert values.shape == (1, 3)


def test_the_kl_is_measured_against_a_reference_other_than_the_start(tiny_model_dir, tmp_path):
    """An iterated round starts from the previous policy and keeps SFT as reference: the logged
    KL is the sum over response tokens of log pi_start - log pi_ref, with pi_ref the reference
    checkpoint loaded separately, and the policy's log-probs are the start's."""
    from conftest import build_tiny_model

    from framework import rollout as R

    other = build_tiny_model(tmp_path / "other", seed=1)  # the reference: other weights
    tokenizer = load_tokenizer(str(tiny_model_dir))
    trainer = PPOTrainer(
        PPOConfig(steps=1, batch_size=4, num_minibatches=1, max_new_tokens=6, save_every=0,
                  sample_every=0),
        PPOInputs(policy_path=str(tiny_model_dir), reference_path=str(other), tokenizer=tokenizer,
                  prompts=[make_prompt(f"Tell me about {t}.", "test") for t in TOPICS],
                  reward=Repetition(tokenizer), output_dir=tmp_path / "run", seed=0))
    exp = trainer.make_experience()
    batch, mask = exp["rollout"], exp["rollout"].response_mask
    start, reference = (AutoModelForCausalLM.from_pretrained(p).eval()
                        for p in (tiny_model_dir, other))
    with torch.no_grad():
        start_lp = R.response_logprobs(start, batch, trainer.cfg.temperature)
        ref_lp = R.response_logprobs(reference, batch, trainer.cfg.temperature)
    torch.testing.assert_close(exp["logprobs"][mask.bool()], start_lp[mask.bool()])
    expected = ((start_lp - ref_lp) * mask).sum(1).mean().item()
    assert exp["stats"]["kl"] == pytest.approx(expected, rel=1e-4)
    assert abs(expected) > 0.1  # two random models (about 0.26 here): not the 0 of start = reference
