"""Rollout forward passes: the packed pass (no padding, the shared prompt prefix once) must give
the plain padded pass's numbers and gradients, and PPO's reuse of the rollout pass for the first
micro-batch must too."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import AutoModelForCausalLM

from framework import packing, rollout
from framework.models import load_tokenizer
from framework_plugins.optimizers.ppo.value_model import ValueModel

PROMPTS = ["Explain why the sky is blue.", "Hi", "Write a poem about the sea and the wind."]


def test_shared_prefix_length_counts_common_real_tokens_and_leaves_each_row_one():
    pad = 0
    ids = torch.tensor([
        [pad, pad, 5, 6, 7, 8, 9, 10, 11, 12, 13, 20],
        [5, 6, 7, 8, 9, 10, 11, 12, 13, 21, 22, 23],
        [pad, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 24],
    ])
    mask = (ids != pad).long()
    # all rows start with 5..13 (9 real tokens), whatever their left padding
    assert packing.shared_prefix_length(ids, mask) == 9
    # the shortest row keeps at least one token of its own
    short = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12, 13], [5, 6, 7, 8, 9, 10, 11, 12, 13]])
    assert packing.shared_prefix_length(short, torch.ones_like(short)) == 8
    # rows that differ from their first real token, or a single row: none
    assert packing.shared_prefix_length(ids[:, 5:], mask[:, 5:]) == 0
    assert packing.shared_prefix_length(ids[:1], mask[:1]) == 0


@pytest.fixture(scope="module")
def batch_and_model(tiny_model_dir):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    tokenizer = load_tokenizer(str(tiny_model_dir))
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True) for p in PROMPTS]
    batch = rollout.generate(model, tokenizer, texts, PROMPTS, max_new_tokens=10,
                             temperature=1.0, top_k=0, top_p=1.0, max_prompt_length=256)
    return batch, model, tiny_model_dir


def _grads(module, loss):
    module.zero_grad(set_to_none=True)
    loss.backward()
    return [p.grad.clone() for p in module.parameters() if p.grad is not None]


def _widths_of_calls(module, fn):
    """Run fn(); return the input_ids width of every call to `module.forward`."""
    widths = []
    hook = module.register_forward_pre_hook(
        lambda _, args, kwargs: widths.append(kwargs["input_ids"].shape[1]), with_kwargs=True)
    try:
        result = fn()
    finally:
        hook.remove()
    return result, widths


def _assert_close_grads(a, b):
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):  # float rounding only: relative to each gradient's norm
        assert (x - y).norm() <= 1e-5 * y.norm() + 1e-8


def _plain_logprobs(model, batch):
    logits = rollout.plain_forward(model, batch).logits[:, batch.prompt_length - 1: -1]
    return rollout.logprobs_of(logits.float() / 0.7, batch.response_ids)


def _plain_values(critic, batch):
    return rollout.plain_forward(critic, batch)[:, batch.prompt_length - 1: -1].float()


def _tokens_read(batch, prefix):
    """The tokens a packed pass runs: the prefix once, then each row's other real tokens but
    its last (whose output would predict the token after the row)."""
    rows = len(batch.input_ids)
    return prefix + int(batch.attention_mask.sum()) - rows * prefix - rows


def test_packed_pass_with_shared_prefix_matches_the_plain_pass_for_the_policy(batch_and_model):
    batch, model, _ = batch_and_model
    assert batch.shared_prefix >= 8  # the chat template's system prompt
    assert packing.supported(model)
    mask = batch.response_mask.bool()
    # one pass: the prefix once, then every row's remaining real tokens
    packed, widths = _widths_of_calls(model, lambda: rollout.response_logprobs(model, batch, 0.7))
    assert widths == [_tokens_read(batch, batch.shared_prefix)]
    plain = _plain_logprobs(model, batch)
    torch.testing.assert_close(packed[mask], plain[mask], rtol=0, atol=1e-5)
    _assert_close_grads(_grads(model, packed[mask].sum()), _grads(model, plain[mask].sum()))
    assert model.config._attn_implementation == "sdpa"  # put back after the pass


def test_packed_pass_with_shared_prefix_matches_the_plain_pass_for_the_critic(batch_and_model):
    batch, _, path = batch_and_model
    torch.manual_seed(1)
    critic = ValueModel.from_policy(str(path), dtype=torch.float32).eval()
    mask = batch.response_mask.bool()
    assert packing.supported(critic)
    packed, widths = _widths_of_calls(critic, lambda: rollout.response_values(critic, batch))
    assert widths == [_tokens_read(batch, batch.shared_prefix)]
    plain = _plain_values(critic, batch)
    torch.testing.assert_close(packed[mask], plain[mask], rtol=0, atol=1e-5)
    _assert_close_grads(_grads(critic, packed[mask].sum()), _grads(critic, plain[mask].sum()))


def test_packed_pass_drops_all_padding_and_keeps_rows_apart(batch_and_model):
    """Rows of different prompt lengths, one ending early with an EOS and padding after it, no
    shared prefix: the model sees each real token once, and every row's log-probs are those of
    its own pass alone (a row attending to another row's tokens would change them)."""
    batch, model, _ = batch_and_model
    pad = 0
    rows = [([11, 12, 13, 14, 15], [21, 22, 23, 24]),  # longest prompt, full response
            ([31, 32], [41, 42, 2, pad]),  # EOS (id 2) then padding
            ([51, 52, 53], [61, 62, 63, 64])]
    width = max(len(p) for p, _ in rows)
    ids = torch.tensor([[pad] * (width - len(p)) + p + r for p, r in rows])
    response_mask = torch.tensor([[float(t != pad) for t in r] for _, r in rows])
    attention = torch.cat([(ids[:, :width] != pad).long(), response_mask.long()], dim=1)
    batch = dataclasses.replace(batch, input_ids=ids, attention_mask=attention,
                                prompt_length=width, response_mask=response_mask,
                                ended=torch.tensor([False, True, False]), shared_prefix=0,
                                prompts=batch.prompts[:3], responses=batch.responses[:3])
    mask = response_mask.bool()
    packed, widths = _widths_of_calls(model, lambda: rollout.response_logprobs(model, batch, 0.7))
    # 5 + 4, 2 + 3, 3 + 4 real tokens, less each row's last: no padding at all
    assert widths == [int(attention.sum()) - 3]
    torch.testing.assert_close(packed[mask], _plain_logprobs(model, batch)[mask], rtol=0, atol=1e-5)
    for i, (prompt, response) in enumerate(rows):  # each row alone, unpadded
        alone = torch.tensor([prompt + [t for t in response if t != pad]])
        logits = model(input_ids=alone).logits[0, len(prompt) - 1: -1]
        expected = rollout.logprobs_of(logits[None] / 0.7, alone[:, len(prompt):])[0]
        torch.testing.assert_close(packed[i, : len(expected)], expected, rtol=0, atol=1e-5)
    assert torch.isfinite(packed).all()  # positions after the EOS: masked, but finite


def test_packed_attention_refuses_to_run_outside_a_packed_pass(batch_and_model):
    _, model, _ = batch_and_model
    layer = model.model.layers[0].self_attn
    q = torch.zeros(1, 4, 3, 8)
    with pytest.raises(RuntimeError, match="runs only inside framework.packing.forward"):
        packing._packed_attention(layer, q, q, q, None)


@pytest.mark.parametrize("accumulation", [1, 2])
def test_ppo_first_micro_batch_reuses_the_rollout_pass_exactly(tiny_model_dir, tmp_path,
                                                               accumulation):
    """make_experience keeps the graph of the first micro-batch's policy and value pass; the
    loss and gradients from it equal those of a fresh pass on the same rows."""
    from framework_plugins.optimizers.ppo.config import PPOConfig
    from framework_plugins.optimizers.ppo.data import make_prompt
    from framework_plugins.optimizers.ppo.trainer import PPOInputs, PPOTrainer
    from framework.reward_source import RewardSource

    class Length(RewardSource):
        def score(self, prompts, responses):
            return [float(len(r)) for r in responses]

    config = PPOConfig(steps=1, batch_size=4, num_minibatches=1, ppo_epochs=1, max_new_tokens=6,
                       gradient_accumulation_steps=accumulation, save_every=0, sample_every=0)
    trainer = PPOTrainer(
        config, PPOInputs(policy_path=str(tiny_model_dir), tokenizer=load_tokenizer(str(tiny_model_dir)),
        prompts=[make_prompt(p, "test") for p in PROMPTS + ["Name a colour."]],
        reward=Length(None), output_dir=tmp_path, seed=0))
    exp = trainer.make_experience()
    rows = exp["order"][: config.minibatch_size // accumulation]
    params = [*trainer.policy.parameters(), *trainer.value.parameters()]

    reused, stats = trainer.loss(exp, rows, exp["first_pass"])
    assert stats["approx_kl_old"] == 0.0 and stats["policy_clipfrac"] == 0.0  # ratio exactly 1
    grads_reused = torch.autograd.grad(reused, params, allow_unused=True)
    fresh, _ = trainer.loss(exp, rows)
    grads_fresh = torch.autograd.grad(fresh, params, allow_unused=True)
    torch.testing.assert_close(reused, fresh, rtol=1e-5, atol=1e-6)
    pairs = [(a, b) for a, b in zip(grads_reused, grads_fresh) if a is not None]
    assert pairs and all(b is not None for _, b in pairs)
    _assert_close_grads([a for a, _ in pairs], [b for _, b in pairs])


def test_grouped_attention_reads_shared_key_heads_the_same_on_every_device_path():
    """Two query heads per key/value head: the CPU path (sdpa's enable_gqa) and the repeated
    heads used elsewhere give the same attention and the same gradients."""
    torch.manual_seed(0)
    q = torch.randn(2, 4, 5, 8, requires_grad=True)
    k, v = (torch.randn(2, 2, 5, 8, requires_grad=True) for _ in range(2))
    mask = torch.ones(5, 5, dtype=torch.bool).tril()[None, None].expand(2, 1, 5, 5).clone()
    mask[1, :, :, :2] = False  # row 1 hides its first two keys
    mask[1, :, :2, 0] = True  # (every query keeps one key)
    results = []
    for device in ("cpu", "cuda"):  # only picks the path; the tensors stay on the CPU
        out = packing._grouped_sdpa(2, torch.device(device))(q, k, v, attn_mask=mask)
        grads = torch.autograd.grad(out.square().sum(), (q, k, v))
        results.append((out, *grads))
    for cpu, other in zip(*results):
        torch.testing.assert_close(cpu, other)
    reference = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1), attn_mask=mask)
    torch.testing.assert_close(results[0][0], reference)


def test_packed_mask_by_hand():
    """Two rows of 3 and 1 tokens after a 2-token shared prefix: each query sees the prefix and
    its own row's tokens up to itself; a window of 2 keeps the last 2 positions only."""
    rows = packing.PackedRows(
        input_ids=torch.zeros(6, dtype=torch.long), position_ids=torch.zeros(6, dtype=torch.long),
        slots=torch.tensor([[2, 3, 4], [5, 0, 0]]),
        valid=torch.tensor([[True, True, True], [True, False, False]]),
        response_index=torch.zeros(2, 1, dtype=torch.long), prefix=2)
    T, F = True, False
    # key columns: prefix 0, 1, then the row's tokens 0, 1, 2 (at positions 2, 3, 4)
    assert rows.attention_mask()[:, 0].tolist() == [
        [[T, T, T, F, F], [T, T, T, T, F], [T, T, T, T, T]],
        [[T, T, T, F, F], [T, T, T, F, F], [T, T, T, F, F]],  # slots past the row: masked keys
    ]
    assert rows.attention_mask(window=2)[0, 0].tolist() == [
        [F, T, T, F, F], [F, F, T, T, F], [F, F, F, T, T]]
    # the prefix's own attention: causal (sdpa's is_causal), or causal within the window
    assert rows.prefix_mask() is None
    wide = dataclasses.replace(rows, prefix=3)
    assert wide.prefix_mask(window=2)[0, 0].tolist() == [[T, F, F], [T, T, F], [F, T, T]]


def test_packed_layout_by_hand():
    """Rows [pad, 7, 8, 9 | 1, 2] and [7, 8, 5, 6 | 3, pad]: the shared 7, 8 packed once, then
    each row's other real tokens at their own positions, less the row's last (nothing reads its
    output); response token t is read at the output of the token before it, and past the EOS
    the row's last output stands in. Read at the last tokens instead (a reward model), every
    real token is kept."""
    ids = torch.tensor([[0, 7, 8, 9, 1, 2], [7, 8, 5, 6, 3, 0]])
    mask = torch.tensor([[0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]])
    rows = packing.PackedRows.of(ids, mask, prompt_length=4, response_width=2, shared_prefix=2)
    assert rows.input_ids.tolist() == [7, 8, 9, 1, 5, 6]
    assert rows.position_ids.tolist() == [0, 1, 2, 3, 2, 3]
    assert rows.slots.tolist() == [[2, 3], [4, 5]]
    assert rows.response_index.tolist() == [[2, 3], [5, 5]]
    assert rows.prefix == 2 and rows.valid.all()
    last = packing.PackedRows.last_tokens(ids, mask, shared_prefix=2)
    assert last.input_ids.tolist() == [7, 8, 9, 1, 2, 5, 6, 3]
    assert last.position_ids.tolist() == [0, 1, 2, 3, 4, 2, 3, 4]
    assert last.response_index.tolist() == [[4], [7]]


def test_packed_pass_keeps_a_sliding_window():
    """A Mistral-style model whose layers see only the last 3 positions: the packed pass gives
    the plain pass's log-probs on rows longer than the window."""
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    config = MistralConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                           sliding_window=3, max_position_embeddings=64, pad_token_id=0)
    config._attn_implementation = "sdpa"
    model = MistralForCausalLM(config).eval()
    assert packing.supported(model)
    ids = torch.tensor([[0, 0, 5, 6, 7, 8, 9, 10, 11],
                        [12, 13, 14, 15, 16, 17, 18, 19, 20]])
    prompt = 4
    attention = (ids != 0).long()
    response_mask = torch.ones(2, ids.shape[1] - prompt)
    batch = rollout.Rollout(prompts=["a", "b"], responses=["", ""], input_ids=ids,
                            attention_mask=attention, prompt_length=prompt,
                            response_mask=response_mask, ended=torch.tensor([False, False]))
    packed = rollout.response_logprobs(model, batch, 0.7)
    torch.testing.assert_close(packed, _plain_logprobs(model, batch), rtol=0, atol=1e-5)
    # a shared prefix of 5 tokens, longer than the window: its own attention is windowed too
    shared = torch.tensor([[0, 5, 6, 7, 8, 9, 30, 31, 32, 33],
                           [5, 6, 7, 8, 9, 21, 22, 23, 24, 25]])
    with_prefix = dataclasses.replace(
        batch, input_ids=shared, attention_mask=(shared != 0).long(), prompt_length=7,
        response_mask=torch.ones(2, 3), shared_prefix=5)
    assert packing.shared_prefix_length(shared[:, :7], (shared[:, :7] != 0).long()) == 5
    torch.testing.assert_close(rollout.response_logprobs(model, with_prefix, 0.7),
                               _plain_logprobs(model, with_prefix), rtol=0, atol=1e-5)
    windowless = MistralForCausalLM(MistralConfig(**{**config.to_dict(), "sliding_window": None}))
    windowless.load_state_dict(model.state_dict())
    windowless.config._attn_implementation = "sdpa"
    assert (rollout.response_logprobs(windowless.eval(), batch, 0.7) - packed).abs().max() > 1e-3


@pytest.mark.parametrize("top_k, filtered", [(0, False), (5, True)])
def test_top_k_zero_samples_from_the_whole_vocabulary(batch_and_model, monkeypatch, top_k,
                                                      filtered):
    """top_k=0 means no top-k filter: the sampled distribution is the one whose log-probs PPO
    computes. (Passing None instead let transformers fill in its default of 50.)"""
    from transformers.generation import logits_process

    _, model, path = batch_and_model
    calls = []
    original = logits_process.TopKLogitsWarper.__call__

    def spy(self, input_ids, scores):
        calls.append(self.top_k)
        return original(self, input_ids, scores)

    monkeypatch.setattr(logits_process.TopKLogitsWarper, "__call__", spy)
    tokenizer = load_tokenizer(str(path))
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True) for p in PROMPTS]
    rollout.generate(model, tokenizer, texts, PROMPTS, max_new_tokens=3, temperature=1.0,
                     top_k=top_k, top_p=1.0, max_prompt_length=256)
    assert bool(calls) == filtered and all(k == top_k for k in calls)
