"""PPO's shared frozen base (plugins/optimizers/ppo/shared_base.py): the reference is the base with adapters
off, policy and value adapters train side by side without touching the base or each other."""

from __future__ import annotations

import pytest
import torch

from framework import packing
from framework import rollout as R
from framework.models import ModelConfig
from framework.models.adapter_models import CAUSAL_LM, load_for_training
from framework.models.adapters import AdapterConfig
from framework_plugins.optimizers.ppo.shared_base import (
    POLICY,
    VALUE,
    SharedValueModel,
    adapter_parameters,
    build_shared_model,
    policy_logprobs,
    reference_logprobs,
)

pytest.importorskip("peft")


def base_model(path, kind):
    model, _ = load_for_training(str(path), CAUSAL_LM, ModelConfig(), AdapterConfig(kind=kind))
    return model.eval()


def shared(path, kind):
    torch.manual_seed(0)
    return build_shared_model(base_model(path, kind), AdapterConfig(kind=kind, rank=4, dropout=0.0))


def make_rollout(prefix_shared: bool) -> R.Rollout:
    """Three left-padded prompts (a common 10-token prefix when `prefix_shared`) and responses,
    the last one shorter (padding after its EOS)."""
    g = torch.Generator().manual_seed(1)
    common = torch.randint(5, 1000, (10,), generator=g)
    rows, lengths = [], [16, 13, 11]
    for n in lengths:
        own = torch.randint(5, 1000, (n - 10,), generator=g)
        prompt = torch.cat([common if prefix_shared else torch.randint(5, 1000, (10,), generator=g), own])
        rows.append(torch.cat([torch.zeros(16 - n, dtype=torch.long), prompt]))
    prompt_ids = torch.stack(rows)
    prompt_mask = (torch.arange(16)[None, :] >= (16 - torch.tensor(lengths))[:, None]).long()
    response = torch.randint(5, 1000, (3, 6), generator=g)
    response_mask = torch.ones(3, 6)
    response_mask[2, 4:] = 0
    ids = torch.cat([prompt_ids, response], 1)
    mask = torch.cat([prompt_mask, response_mask.long()], 1)
    return R.Rollout(prompts=[None] * 3, responses=[""] * 3, input_ids=ids, attention_mask=mask,
                     prompt_length=16, response_mask=response_mask, ended=torch.ones(3, dtype=torch.bool),
                     shared_prefix=packing.shared_prefix_length(prompt_ids, prompt_mask))


def perturb(params, scale=0.5, seed=2):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)


@pytest.mark.parametrize("kind", ["lora", "qlora"])
def test_reference_is_the_base_with_adapters_disabled(kind, tiny_model_dir):
    if kind == "qlora":
        pytest.importorskip("bitsandbytes")
    model = shared(tiny_model_dir, kind)
    separate = base_model(tiny_model_dir, kind)  # loaded (and quantized) on its own
    rollouts = [make_rollout(prefix) for prefix in (True, False)]
    assert [r.shared_prefix > 0 for r in rollouts] == [True, False]  # both paths of framework.rollout
    # No gradients, as for PPO's rollout-time log-probs (bitsandbytes' CPU kernels round
    # differently with autograd on: ~1e-3 on these log-probs under qlora).
    with torch.no_grad():
        expected = [R.response_logprobs(separate, r, 0.7) for r in rollouts]
        for rollout, logprobs in zip(rollouts, expected):  # B starts at zero: policy = reference
            torch.testing.assert_close(policy_logprobs(model, rollout, 0.7), logprobs)
        perturb(adapter_parameters(model, POLICY))
        for rollout, logprobs in zip(rollouts, expected):
            moved = policy_logprobs(model, rollout, 0.7)
            assert (moved - logprobs).abs().max() > 1e-2  # the policy adapter now matters ...
            torch.testing.assert_close(reference_logprobs(model, rollout, 0.7), logprobs)  # ... not here


def test_policy_and_value_adapters_train_together_and_apart(tiny_model_dir):
    model = shared(tiny_model_dir, "lora")
    value = SharedValueModel(model)
    rollout = make_rollout(True)
    policy_params, value_params = adapter_parameters(model, POLICY), adapter_parameters(model, VALUE)
    assert policy_params and value_params and not set(map(id, policy_params)) & set(map(id, value_params))
    assert list(value.parameters()) == [value.head.weight, value.head.bias]  # the base is not its own
    base = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    assert all("lora_" not in n for n in base)

    # Each role reads its own adapter only.
    values = R.response_values(value, rollout)
    logprobs = policy_logprobs(model, rollout, 1.0)
    perturb(policy_params, seed=5)
    torch.testing.assert_close(R.response_values(value, rollout), values)
    perturb(value_params, seed=6)
    with torch.no_grad():
        perturb_policy_logprobs = policy_logprobs(model, rollout, 1.0)
    assert (R.response_values(value, rollout) - values).abs().max() > 1e-3
    perturb(policy_params, seed=5, scale=-0.5)  # undo: the policy is back where it was
    torch.testing.assert_close(policy_logprobs(model, rollout, 1.0), logprobs)
    assert (perturb_policy_logprobs - logprobs).abs().max() > 1e-3

    # One backward through a summed loss reaches both adapters and the head, never the base.
    perturb(policy_params, seed=8)  # a zero B would leave A's gradient zero
    mask = rollout.response_mask
    loss = -(policy_logprobs(model, rollout, 1.0) * mask).sum() + (R.response_values(value, rollout) ** 2).sum()
    loss.backward()
    for p in policy_params + value_params + list(value.parameters()):
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
    optimizer = torch.optim.SGD(policy_params + value_params + list(value.parameters()), lr=0.1)
    optimizer.step()
    for n, p in model.named_parameters():
        if n in base:
            assert torch.equal(p, base[n]), n
