"""The arithmetic of PPO as pure tensor functions (no models, no state).

Shapes: `B` sequences, `T` response tokens. `mask` is 1.0 on real response tokens (up to and
including the EOS) and 0.0 on the padding after it; a response's real tokens are a prefix.
Token `t` of a response is generated from the state `s_t` = prompt + response[:t]; `values[:, t]`
is V(s_t) and `logprobs[:, t]` is log pi(response[t] | s_t).
"""

from __future__ import annotations

import torch

from framework.rollout import logprobs_of  # noqa: F401  (re-exported for the update)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    """sum(x * m) / sum(m), over `dim` (all elements if None)."""
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Population variance over the masked elements: mean_m((x - mean_m(x))^2)."""
    mean = masked_mean(x, mask)
    return masked_mean((x - mean) ** 2, mask)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8):
    """Normalize to unit variance over the masked elements: (x - mu) / sqrt(var + eps).

    With `shift_mean=False` the mean is added back, (x - mu) / sqrt(var + eps) + mu, so only the
    scale changes. Masked-out positions come back as 0.
    """
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def kl_per_token(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """The k1 estimate of KL(pi || pi_ref) at each sampled token: log pi(y_t) - log pi_ref(y_t).

    Its expectation under pi, summed over a response, is the sequence KL; one sample can be
    negative.
    """
    return logprobs - ref_logprobs


def shaped_rewards(scores: torch.Tensor, logprobs, ref_logprobs, mask, beta: float) -> torch.Tensor:
    """InstructGPT eq. 2 spread over tokens (Ziegler et al. 2019):

        r_t = -beta * (log pi(y_t) - log pi_ref(y_t))            for each response token t
        r_T += score                                             at the last real token T

    so that sum_t r_t = score - beta * KL-estimate(response). Padding gets 0.
    """
    rewards = -beta * kl_per_token(logprobs, ref_logprobs) * mask
    last = mask.long().sum(dim=1) - 1  # index of the last real token (the EOS if there is one)
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, last] += scores.to(rewards.dtype)
    return rewards


def gae(rewards, values, mask, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016), right to left:

        delta_t = r_t + gamma * V(s_{t+1}) - V(s_t)       (V after the last real token is 0)
        A_t     = delta_t + gamma * lam * A_{t+1}
        R_t     = A_t + V(s_t)                            (the value target, "returns")

    Returns (advantages, returns), both 0 on padding.
    """
    rewards, values = rewards * mask, values * mask  # padding contributes nothing
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])
    next_advantage = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_advantage = delta + gamma * lam * next_advantage
        advantages[:, t] = next_advantage
        next_value = values[:, t]
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def policy_loss(logprobs, old_logprobs, advantages, mask, cliprange: float):
    """PPO's clipped surrogate (Schulman et al. 2017), as a loss to minimize:

        ratio = exp(logp - logp_old)
        loss  = mean_m( max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)) )

    Returns (loss, clip fraction = share of tokens where the clipped term is the larger one).
    """
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).float(), mask)
    return loss, clipfrac


def value_loss(values, old_values, returns, mask, cliprange_value: float):
    """The value loss with clipping around the rollout's values:

        V_clip = V_old + clip(V - V_old, -eps_v, eps_v)
        loss   = 0.5 * mean_m( max((V - R)^2, (V_clip - R)^2) )

    Returns (loss, clip fraction = share of tokens where the clipped error is the larger one).
    """
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    unclipped_error = (values - returns) ** 2
    clipped_error = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_error, clipped_error), mask)
    clipfrac = masked_mean((clipped_error > unclipped_error).float(), mask)
    return loss, clipfrac


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """H = -sum_v p_v log p_v = logsumexp(z) - sum_v p_v z_v, per position."""
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)


def lm_loss(logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """Next-token cross-entropy: mean over predicted real tokens of -log p(x_{i+1} | x_<=i)."""
    nll = -logprobs_of(logits[:, :-1], input_ids[:, 1:])
    return masked_mean(nll, attention_mask[:, 1:].to(nll.dtype))


def ptx_loss(logits, input_ids, attention_mask, ptx_coef: float) -> torch.Tensor:
    """InstructGPT's PPO-ptx term: gamma_ptx * (language-model loss on pretraining text).

    Minimizing it maximizes gamma_ptx * E_pretrain[log pi(x)], the last term of eq. 2.
    """
    return ptx_coef * lm_loss(logits, input_ids, attention_mask)
