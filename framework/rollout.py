"""Rollouts: sample responses to chat prompts, then score them token by token.

A batch is laid out as `[left-padded prompt | response | padding after the EOS]`. Everything an
RL update needs is a tensor over the response columns. Used by PPO
(framework_plugins/ppo/) and by the RL stage's before/after evaluation.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from transformers import GenerationConfig



@dataclass
class Rollout:
    prompts: list  # what the reward source sees as the prompt, one per sequence
    responses: list[str]  # decoded responses, without the EOS
    input_ids: torch.Tensor  # [B, P + T] prompt and response ids
    attention_mask: torch.Tensor  # [B, P + T] 1 on real prompt tokens and real response tokens
    prompt_length: int  # P, the padded prompt width
    response_mask: torch.Tensor  # [B, T] float, 1 up to and including the first EOS
    ended: torch.Tensor  # [B] bool, whether the response ended with an EOS

    @property
    def response_ids(self) -> torch.Tensor:
        return self.input_ids[:, self.prompt_length:]


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as `generate` uses: 0 at the first real token."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def eos_ids(tokenizer, model) -> list[int]:
    """Tokens that end a response: the tokenizer's EOS and the model's generation EOS ids."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    return sorted(i for i in ids if i is not None)


@torch.no_grad()
def generate(model, tokenizer, prompt_texts: list[str], prompts: list, *, max_new_tokens: int,
             temperature: float, top_k: int, top_p: float, max_prompt_length: int) -> Rollout:
    """Sample one response per chat-formatted prompt with the KV cache, and cut it at its EOS."""
    tokenizer.padding_side = "left"
    tokenizer.truncation_side = "left"  # a long prompt keeps its end (the assistant header)
    batch = tokenizer(
        prompt_texts, return_tensors="pt", padding=True, add_special_tokens=False,
        truncation=True, max_length=max_prompt_length,
    ).to(model.device)
    stop = eos_ids(tokenizer, model)
    config = GenerationConfig(
        do_sample=True, temperature=temperature, top_k=top_k or None, top_p=top_p,
        max_new_tokens=max_new_tokens, eos_token_id=stop, pad_token_id=tokenizer.pad_token_id,
        use_cache=True,
    )
    was_training = model.training
    model.eval()
    output = model.generate(**batch, generation_config=config)
    model.train(was_training)

    prompt_length = batch["input_ids"].shape[1]
    response, response_mask, ended = truncate_at_eos(
        output[:, prompt_length:], stop, tokenizer.pad_token_id)

    texts = [
        tokenizer.decode(row[: int(n) - int(e)], skip_special_tokens=True)
        for row, n, e in zip(response, response_mask.sum(1), ended)
    ]
    return Rollout(
        prompts=prompts, responses=texts,
        input_ids=torch.cat([batch["input_ids"], response], dim=1),
        attention_mask=torch.cat([batch["attention_mask"], response_mask.long()], dim=1),
        prompt_length=prompt_length, response_mask=response_mask, ended=ended,
    )


def truncate_at_eos(response: torch.Tensor, stop: list[int], pad_id: int):
    """Cut each response after its first EOS (which it keeps): returns the responses with pad
    after the EOS, the mask (1 up to and including the first EOS) and whether an EOS came."""
    is_eos = torch.isin(response, torch.tensor(stop, device=response.device))
    before = is_eos.long().cumsum(1) - is_eos.long()  # EOS tokens strictly before each position
    mask = (before == 0).float()
    return torch.where(mask.bool(), response, pad_id), mask, is_eos.any(dim=1)


def logprobs_of(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[token] at each position: logits [B, T, V], tokens [B, T] -> [B, T]."""
    return torch.gather(torch.log_softmax(logits.float(), dim=-1), 2, tokens.unsqueeze(-1)).squeeze(-1)


def response_logits(model, rollout: Rollout, temperature: float) -> torch.Tensor:
    """The logits that predicted each response token, divided by the sampling temperature:
    [B, T, V]. Position P - 1 + t predicts response token t."""
    keep = rollout.response_mask.shape[1] + 1  # the LM head runs on these last positions only
    out = model(
        input_ids=rollout.input_ids, attention_mask=rollout.attention_mask,
        position_ids=position_ids(rollout.attention_mask), use_cache=False,
        **({"logits_to_keep": keep} if _accepts_logits_to_keep(model) else {}),
    )
    return out.logits[:, -keep:-1].float() / temperature


def _accepts_logits_to_keep(model) -> bool:
    forward = getattr(model, "module", model).forward  # a DDP wrapper holds the model
    return "logits_to_keep" in inspect.signature(forward).parameters


def response_logprobs(model, rollout: Rollout, temperature: float) -> torch.Tensor:
    """log pi(y_t | s_t) for each response token: [B, T] (padding positions are meaningless)."""
    return logprobs_of(response_logits(model, rollout, temperature), rollout.response_ids)


def response_values(value_model, rollout: Rollout) -> torch.Tensor:
    """V(s_t) for each response token t, read at the position before it: [B, T]."""
    values = value_model(
        rollout.input_ids, attention_mask=rollout.attention_mask,
        position_ids=position_ids(rollout.attention_mask),
    )
    p = rollout.prompt_length
    return values[:, p - 1 : -1].float()


def apply_missing_eos_penalty(scores: torch.Tensor, ended: torch.Tensor, penalty) -> torch.Tensor:
    """score - penalty for each response that hit max_new_tokens without an EOS (None: off)."""
    if penalty is None:
        return scores
    return torch.where(ended, scores, scores - penalty)


def select(rollout: Rollout, rows: torch.Tensor) -> Rollout:
    """The sub-batch of `rollout` at `rows` (a minibatch)."""
    picked = rows.tolist()
    return Rollout(
        prompts=[rollout.prompts[i] for i in picked],
        responses=[rollout.responses[i] for i in picked],
        input_ids=rollout.input_ids[rows], attention_mask=rollout.attention_mask[rows],
        prompt_length=rollout.prompt_length, response_mask=rollout.response_mask[rows],
        ended=rollout.ended[rows],
    )
