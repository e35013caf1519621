"""PPO's arithmetic against values worked out by hand (the arithmetic is in the comments)."""

import math

import pytest
import torch

from framework.errors import ConfigError
from framework_plugins.optimizers.ppo import PPOOptimizer
from framework_plugins.optimizers.ppo import functional as F
from framework_plugins.optimizers.ppo.config import PPOConfig
from framework_plugins.optimizers.ppo.data import SeededOrder, make_prompt
from framework_plugins.optimizers.ppo.kl_control import AdaptiveKLController, FixedKLController
from framework.rollout import apply_missing_eos_penalty, truncate_at_eos


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def close(actual, expected):
    torch.testing.assert_close(torch.as_tensor(actual, dtype=torch.float32),
                               torch.as_tensor(expected, dtype=torch.float32), atol=1e-5, rtol=0)


def test_masked_mean_and_whiten():
    x, mask = t([1.0, 2.0, 3.0, 100.0]), t([1.0, 1.0, 1.0, 0.0])
    close(F.masked_mean(x, mask), 2.0)  # (1 + 2 + 3) / 3; the 100 is padding
    # var = ((1-2)^2 + 0^2 + (3-2)^2) / 3 = 2/3, so (x - 2) / sqrt(2/3) = [-1.2247, 0, 1.2247]
    s = math.sqrt(2 / 3)
    close(F.masked_whiten(x, mask), t([-1 / s, 0.0, 1 / s, 0.0]))
    # keeping the mean adds 2 back to the real positions
    close(F.masked_whiten(x, mask, shift_mean=False), t([2 - 1 / s, 2.0, 2 + 1 / s, 0.0]))


def test_shaped_rewards_kl_penalty_and_score_at_last_real_token():
    logprobs, ref = t([-1.0, -2.0, -0.5]), t([-1.5, -1.0, -0.5])
    mask = t([1.0, 1.0, 0.0])
    close(F.kl_per_token(logprobs, ref), t([0.5, -1.0, 0.0]))  # log pi - log pi_ref
    # -0.1 * [0.5, -1.0] = [-0.05, 0.1]; the score 3 lands on token 1, the last real one
    close(F.shaped_rewards(torch.tensor([3.0]), logprobs, ref, mask, beta=0.1),
          t([-0.05, 3.1, 0.0]))


def test_gae_by_hand():
    gamma, lam = 0.9, 0.5  # gamma * lam = 0.45
    rewards = t([1.0, 0.0, 2.0], [1.0, 2.0, 99.0])
    values = t([0.5, 1.0, 1.5], [0.5, 1.0, 7.0])
    mask = t([1.0, 1.0, 1.0], [1.0, 1.0, 0.0])
    advantages, returns = F.gae(rewards, values, mask, gamma, lam)
    # row 0: delta_2 = 2 + 0 - 1.5 = 0.5                      A_2 = 0.5
    #        delta_1 = 0 + 0.9 * 1.5 - 1.0 = 0.35             A_1 = 0.35 + 0.45 * 0.5 = 0.575
    #        delta_0 = 1 + 0.9 * 1.0 - 0.5 = 1.4              A_0 = 1.4 + 0.45 * 0.575 = 1.65875
    # row 1: token 2 is padding (its 99 and 7 are ignored), so V after token 1 is 0:
    #        delta_1 = 2 + 0 - 1.0 = 1.0                       A_1 = 1.0
    #        delta_0 = 1 + 0.9 * 1.0 - 0.5 = 1.4               A_0 = 1.4 + 0.45 * 1.0 = 1.85
    close(advantages, t([1.65875, 0.575, 0.5], [1.85, 1.0, 0.0]))
    close(returns, t([1.65875 + 0.5, 0.575 + 1.0, 0.5 + 1.5], [1.85 + 0.5, 1.0 + 1.0, 0.0]))


def test_gae_gamma_one_lambda_one_is_reward_to_go_minus_value():
    rewards, values, mask = t([1.0, 2.0, 3.0]), t([0.1, 0.2, 0.3]), t([1.0, 1.0, 1.0])
    advantages, returns = F.gae(rewards, values, mask, 1.0, 1.0)
    close(returns, t([6.0, 5.0, 3.0]))  # Monte-Carlo returns: 1+2+3, 2+3, 3
    close(advantages, t([5.9, 4.8, 2.7]))


def test_policy_loss_with_clipping_active():
    ratio = t([1.5, 0.5, 1.1])
    advantages, mask = t([1.0, 1.0, -1.0]), t([1.0, 1.0, 1.0])
    loss, clipfrac = F.policy_loss(ratio.log(), torch.zeros(3), advantages, mask, cliprange=0.2)
    # token 0: max(-1 * 1.5, -1 * 1.2) = -1.2   (clipped term is larger: clipped)
    # token 1: max(-1 * 0.5, -1 * 0.8) = -0.5   (ratio fell: no gain from clipping, unclipped)
    # token 2: max(1 * 1.1, 1 * 1.1)   =  1.1   (inside [0.8, 1.2]: equal, not clipped)
    close(loss, (-1.2 - 0.5 + 1.1) / 3)
    close(clipfrac, 1 / 3)


def test_policy_loss_without_clipping_is_minus_mean_advantage():
    advantages, mask = t([1.0, 1.0, -1.0, 5.0]), t([1.0, 1.0, 1.0, 0.0])
    loss, clipfrac = F.policy_loss(torch.zeros(4), torch.zeros(4), advantages, mask, 0.2)
    close(loss, -(1 + 1 - 1) / 3)  # ratio 1 everywhere; the masked 5 is ignored
    close(clipfrac, 0.0)


def test_value_loss_with_and_without_clipping():
    values, old, returns = t([0.5, 0.1, -0.3]), torch.zeros(3), t([1.0, 0.0, -1.0])
    mask = t([1.0, 1.0, 1.0])
    loss, clipfrac = F.value_loss(values, old, returns, mask, cliprange_value=0.2)
    # token 0: V_clip = 0.2;  (0.5 - 1)^2 = 0.25, (0.2 - 1)^2 = 0.64   -> 0.64 (clipped)
    # token 1: V_clip = 0.1;  0.01 both                               -> 0.01
    # token 2: V_clip = -0.2; (-0.3 + 1)^2 = 0.49, (-0.2 + 1)^2 = 0.64 -> 0.64 (clipped)
    close(loss, 0.5 * (0.64 + 0.01 + 0.64) / 3)
    close(clipfrac, 2 / 3)
    loss, clipfrac = F.value_loss(values, old, returns, mask, cliprange_value=10.0)
    close(loss, 0.5 * (0.25 + 0.01 + 0.49) / 3)  # no clipping: plain half squared error
    close(clipfrac, 0.0)


def test_entropy_from_logits():
    logits = t([0.0, 0.0, -1e9, -1e9], [0.0, math.log(3), -1e9, -1e9], [1.0, 1.0, 1.0, 1.0])
    # p = [1/2, 1/2] -> ln 2;  p = [1/4, 3/4] -> -(1/4 ln 1/4 + 3/4 ln 3/4);  uniform of 4 -> ln 4
    expected = [math.log(2), -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)), math.log(4)]
    close(F.entropy_from_logits(logits), torch.tensor(expected))


def test_ptx_loss():
    input_ids = torch.tensor([[0, 1, 1]])
    # position 0 predicts token 1 with p = 3/4 (logits [0, ln 3]); position 1 predicts token 1
    # with p = 1/4 (logits [ln 3, 0]); position 2 predicts nothing.
    logits = torch.tensor([[[0.0, math.log(3)], [math.log(3), 0.0], [5.0, 5.0]]])
    full = torch.ones(1, 3)
    close(F.lm_loss(logits, input_ids, full), (math.log(4 / 3) + math.log(4)) / 2)
    close(F.ptx_loss(logits, input_ids, full, ptx_coef=2.0), math.log(4 / 3) + math.log(4))
    # the last token is padding: only position 0's prediction counts
    close(F.ptx_loss(logits, input_ids, torch.tensor([[1.0, 1.0, 0.0]]), 2.0), 2 * math.log(4 / 3))
    close(F.ptx_loss(logits, input_ids, full, ptx_coef=0.0), 0.0)  # ptx off


def test_adaptive_kl_controller_by_hand():
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    ctl.update(current_kl=9.0, n_steps=256)
    # error = clip(9/6 - 1 = 0.5, -0.2, 0.2) = 0.2; beta = 0.1 * (1 + 0.2 * 256/10000) = 0.100512
    assert ctl.value == pytest.approx(0.100512, abs=1e-12)
    ctl.update(current_kl=5.4, n_steps=256)
    # error = 5.4/6 - 1 = -0.1; beta = 0.100512 * (1 - 0.1 * 0.0256) = 0.10025468928
    assert ctl.value == pytest.approx(0.10025468928, abs=1e-12)
    ctl.update(current_kl=0.0, n_steps=10000)  # error clipped at -0.2: beta * 0.8
    assert ctl.value == pytest.approx(0.10025468928 * 0.8, abs=1e-12)

    restored = AdaptiveKLController(0.5, target=6.0, horizon=10000)
    restored.load_state_dict(ctl.state_dict())
    assert restored.value == ctl.value


def test_fixed_kl_controller_does_not_move():
    ctl = FixedKLController(0.05)
    ctl.update(current_kl=100.0, n_steps=8)
    assert ctl.value == 0.05


def test_truncate_at_eos_keeps_the_eos_and_masks_after_it():
    eos, pad = 2, 0
    responses = torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8], [2, 9, 9, 9]])
    cut, mask, ended = truncate_at_eos(responses, [eos], pad)
    assert cut.tolist() == [[5, 2, 0, 0], [5, 6, 7, 8], [2, 0, 0, 0]]
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert ended.tolist() == [True, False, True]
    scores = apply_missing_eos_penalty(torch.tensor([1.0, 1.0, 1.0]), ended, 0.5)
    assert scores.tolist() == [1.0, 0.5, 1.0]  # only the unfinished response is penalized
    assert apply_missing_eos_penalty(torch.ones(3), ended, None).tolist() == [1.0, 1.0, 1.0]


def test_seeded_order_is_a_permutation_per_epoch_and_resumable():
    order = SeededOrder(5, seed=3)
    first = order.take(3) + order.take(3)  # crosses into epoch 1
    assert sorted(first[:5]) == [0, 1, 2, 3, 4]
    assert order.state_dict() == {"epoch": 1, "index": 1}
    again = SeededOrder(5, seed=3)
    again.load_state_dict({"epoch": 0, "index": 3})
    assert again.take(3) == first[3:]


def test_prompt_rows():
    assert make_prompt("Hi", "x").messages == [{"role": "user", "content": "Hi"}]
    chat = {"prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]}
    assert make_prompt(chat, "x").text == "Q"


def test_config_validation_names_key_and_fix():
    with pytest.raises(ConfigError, match=r"optimizer.batch_size=6 is not divisible by "
                                          r"num_minibatches=4; pick num_minibatches"):
        PPOOptimizer.parse_config({"batch_size": 6, "num_minibatches": 4}, "optimizer")
    with pytest.raises(ConfigError, match=r"learning_rate=0.0: must be > 0"):
        PPOOptimizer(PPOConfig(learning_rate=0.0))
    with pytest.raises(ConfigError, match="gradient_accumulation_steps=3 does not divide"):
        PPOOptimizer(PPOConfig(batch_size=8, num_minibatches=2, gradient_accumulation_steps=3))
    with pytest.raises(ConfigError, match="value_init='critic'"):
        PPOOptimizer(PPOConfig(value_init="critic"))
    with pytest.raises(ConfigError, match=r"optimizer\.lr: not a parameter\. Valid keys: steps, "):
        PPOOptimizer.parse_config({"lr": 1e-5}, "optimizer")
    assert PPOOptimizer.parse_config({"steps": 3}, "optimizer").steps == 3
