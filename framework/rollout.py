"""Rollouts: sample responses to chat prompts, then score them token by token.

A batch is laid out as `[left-padded prompt | response | padding after the EOS]`. Everything an
RL update needs is a tensor over the response columns. Used by PPO
(framework_plugins/optimizers/ppo/) and by the RL stage's before/after evaluation.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from transformers import GenerationConfig

from framework import packing
from framework.hardware import cpu_decode


@dataclass
class Rollout:
    prompts: list  # what the reward source sees as the prompt, one per sequence
    responses: list[str]  # decoded responses, without the EOS
    input_ids: torch.Tensor  # [B, P + T] prompt and response ids
    attention_mask: torch.Tensor  # [B, P + T] 1 on real prompt tokens and real response tokens
    prompt_length: int  # P, the padded prompt width
    response_mask: torch.Tensor  # [B, T] float, 1 up to and including the first EOS
    ended: torch.Tensor  # [B] bool, whether the response ended with an EOS
    # The first `shared_prefix` real tokens are the same in every row (a chat template's system
    # prompt): forward passes compute them once for the batch (framework/packing.py). 0: off.
    shared_prefix: int = 0

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
        do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p,  # top_k 0: off
        max_new_tokens=max_new_tokens, eos_token_id=stop, pad_token_id=tokenizer.pad_token_id,
        use_cache=True,
    )
    was_training = model.training
    model.eval()
    with cpu_decode.decoding(model, len(prompt_texts)):  # framework/hardware/cpu_decode.py
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
        shared_prefix=packing.shared_prefix_length(batch["input_ids"], batch["attention_mask"]),
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
    [B, T, V]. Position P - 1 + t predicts response token t; the LM head runs on those only."""
    width = rollout.response_mask.shape[1]
    if packing.supported(model):
        rows = packed_rows(rollout)
        keep = {"logits_to_keep": rows.response_index.flatten()}
        logits = packing.forward(model, rows, **keep).logits
        return logits.view(*rows.response_index.shape, -1).float() / temperature
    keep = width + 1
    extra = {"logits_to_keep": keep} if _accepts(model, "logits_to_keep") else {}
    return plain_forward(model, rollout, **extra).logits[:, -keep:-1].float() / temperature


def response_values(value_model, rollout: Rollout) -> torch.Tensor:
    """V(s_t) for each response token t, read at the position before it: [B, T]."""
    if packing.supported(value_model):
        rows = packed_rows(rollout)
        values = packing.forward(value_model, rows)
        return values[0, rows.response_index].float()
    t = rollout.response_mask.shape[1]
    return plain_forward(value_model, rollout)[:, -t - 1: -1].float()


def packed_rows(rollout: Rollout) -> packing.PackedRows:
    """The rollout's real tokens packed, its shared prefix once."""
    return packing.PackedRows.of(
        rollout.input_ids, rollout.attention_mask, rollout.prompt_length,
        rollout.response_mask.shape[1], rollout.shared_prefix)


def _accepts(model, argument: str) -> bool:
    """Whether `model.forward` (inside a DDP wrapper, the model's) names `argument`."""
    return argument in inspect.signature(getattr(model, "module", model).forward).parameters


def plain_forward(model, rollout: Rollout, **kwargs):
    """`model` on the padded rows as they are (models outside transformers' attention interface)."""
    mask = rollout.attention_mask
    return model(input_ids=rollout.input_ids, attention_mask=mask,
                 position_ids=position_ids(mask), use_cache=False, **kwargs)


def response_logprobs(model, rollout: Rollout, temperature: float) -> torch.Tensor:
    """log pi(y_t | s_t) for each response token: [B, T] (padding positions are meaningless)."""
    return logprobs_of(response_logits(model, rollout, temperature), rollout.response_ids)


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
        ended=rollout.ended[rows], shared_prefix=rollout.shared_prefix,
    )
