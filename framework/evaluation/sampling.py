"""Seeded samples of a policy on chat prompts, with what can be read off them: token lengths,
the KL to a reference policy and the policy's token entropy.

KL(pi || pi_ref) is estimated on the policy's own samples, per response, as
sum_t [log pi(y_t | s_t) - log pi_ref(y_t | s_t)]; the entropy of a response is the mean over its
tokens of H(pi(. | s_t)), both at the sampling temperature."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from framework import rollout


@dataclass
class Samples:
    responses: list[str] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)  # response tokens, the EOS included
    kl: list[float] = field(default_factory=list)  # per response; empty without a reference
    entropy: list[float] = field(default_factory=list)  # per response; empty unless asked


@torch.no_grad()
def sample(policy, tokenizer, prompts: Sequence[list], *, max_new_tokens: int,
           temperature: float, batch_size: int, seed: int, reference=None,
           entropy: bool = False, max_prompt_length: int = 1024) -> Samples:
    """One response per prompt (repeat a prompt for several), in batches, seeded once."""
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
             for p in prompts]
    torch.manual_seed(seed)
    out = Samples()
    for start in range(0, len(prompts), batch_size):
        batch = rollout.generate(
            policy, tokenizer, texts[start:start + batch_size], list(prompts[start:start + batch_size]),
            max_new_tokens=max_new_tokens, temperature=temperature, top_k=0, top_p=1.0,
            max_prompt_length=max_prompt_length,
        )
        mask = batch.response_mask
        out.responses += batch.responses
        out.lengths += [int(n) for n in mask.sum(1).tolist()]
        if reference is None and not entropy:
            continue
        log_probs = torch.log_softmax(rollout.response_logits(policy, batch, temperature), -1)
        if reference is not None:
            logp = log_probs.gather(2, batch.response_ids.unsqueeze(-1)).squeeze(-1)
            ref_logp = rollout.response_logprobs(reference, batch, temperature)
            out.kl += ((logp - ref_logp) * mask).sum(1).tolist()
        if entropy:
            per_token = -(log_probs.exp() * log_probs).sum(-1)
            out.entropy += ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).tolist()
    return out
