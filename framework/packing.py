"""Padding-free forward passes over a rollout: each real token once.

A rollout is laid out as `[left pad | prompt | response | pad after the EOS]`, and a plain pass
runs the model on every column. Here the rows' real tokens go through the model as one packed
sequence `[1, N]` instead: the linear layers, norms and LM head, nearly all of the compute, see N
real tokens and no padding. Only attention must keep the rows apart; it runs per row on a padded
copy of queries, keys and values (a few percent of the compute), through an attention
implementation registered with transformers ("packed_rows") that a pass selects for its duration.

A prompt prefix shared by every row (a chat template's system block) runs once before, as a
batch of one, into a KV cache that every row's queries also attend to; its positions come first,
so each row sees exactly the tokens and positions of its own plain pass. Outputs equal the plain
pass up to float rounding (tests/test_rollout.py) and autograd flows through all of it.

Models qualify when they route attention through transformers' attention interface
(`_supports_attention_backend`: Llama, Qwen, Mistral, Gemma and most current architectures) and
run it as `sdpa` (transformers' default); sliding-window layers keep their window. Others take
the plain padded pass (framework/rollout.py).
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
from dataclasses import dataclass

import torch
from transformers import AttentionInterface, DynamicCache, PreTrainedModel
from transformers.integrations.sdpa_attention import repeat_kv
from transformers.masking_utils import AttentionMaskInterface

ATTENTION = "packed_rows"


@dataclass
class PackedRows:
    """Where each row's tokens sit in the packed sequence."""

    input_ids: torch.Tensor  # [N] the real tokens after the shared prefix, row after row
    position_ids: torch.Tensor  # [N] each token's position in its own row (prefix included)
    slots: torch.Tensor  # [B, L] packed index of each row's l-th token (0 past its end)
    valid: torch.Tensor  # [B, L] bool, l < the row's token count
    response_index: torch.Tensor  # [B, T] packed index of the output that predicts response token t
    prefix_ids: torch.Tensor | None  # [1, n] the shared prefix, or None

    @classmethod
    def of(cls, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_length: int,
           response_width: int, shared_prefix: int) -> PackedRows:
        """The layout of a left-padded `[prompt | response]` batch; `shared_prefix` leading real
        tokens are common to every row and run separately (0: none)."""
        real = attention_mask.bool()
        seen = real.long().cumsum(1)  # real tokens up to and including each column
        keep = real & (seen > shared_prefix)
        lengths = keep.sum(1)
        offsets = lengths.cumsum(0) - lengths
        width = int(lengths.max())
        steps = torch.arange(width, device=input_ids.device)[None, :]
        valid = steps < lengths[:, None]
        slots = torch.where(valid, offsets[:, None] + steps, 0)
        # response token t is predicted by column prompt_length - 1 + t; past a row's last real
        # token (padding after its EOS) the row's last output stands in (callers mask it)
        columns = prompt_length - 1 + torch.arange(response_width, device=input_ids.device)
        before = (keep.long().cumsum(1) - 1)[:, columns]  # kept tokens before, in the row
        response_index = offsets[:, None] + torch.minimum(before, lengths[:, None] - 1)
        prefix_ids = None
        if shared_prefix:
            first = int(real[0].long().argmax())  # row 0's first real token
            prefix_ids = input_ids[:1, first: first + shared_prefix]
        return cls(input_ids=input_ids[keep], position_ids=(seen - 1)[keep], slots=slots,
                   valid=valid, response_index=response_index, prefix_ids=prefix_ids)

    def attention_mask(self, cached: int, window: int | None = None) -> torch.Tensor:
        """[B, 1, L, cached + L] bool: every row sees the cached prefix and its own earlier
        tokens (within the last `window` positions for a sliding-window layer)."""
        rows, width = self.valid.shape
        steps = torch.arange(width, device=self.valid.device)
        causal = (steps[None, :, None] >= steps[None, None, :]) & self.valid[:, None, :]
        mask = torch.cat([causal.new_ones(rows, width, cached), causal], dim=2)
        if window is not None:  # query at position cached + t, key at position k
            keys = torch.arange(cached + width, device=self.valid.device)
            mask &= (cached + steps[:, None] - keys[None, :] < window)[None]
        return mask[:, None]


_ACTIVE: contextvars.ContextVar[PackedRows | None] = contextvars.ContextVar("packed_rows",
                                                                           default=None)


def _packed_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                      **kwargs):
    """Attention of a packed pass: query [1, H, N, D]; key and value [1, Hkv, cached + N, D]
    (the shared prefix's cache first). Returns [1, N, H, D] as transformers' implementations do."""
    rows = _ACTIVE.get()
    if rows is None:
        raise RuntimeError(f"The '{ATTENTION}' attention implementation runs only inside "
                           f"framework.packing.forward.")
    unsupported = [k for k in ("position_bias", "softcap", "s_aux") if kwargs.get(k) is not None]
    if unsupported:  # sdpa itself refuses these; say so rather than compute something else
        raise NotImplementedError(f"Packed rollout passes do not support attention with "
                                  f"{', '.join(unsupported)}; this model needs the plain pass.")
    batch, width = rows.slots.shape
    cached = key.shape[2] - query.shape[2]
    flat = rows.slots.reshape(-1)

    def per_row(x):  # [1, heads, N, D] -> [B, heads, L, D]
        return x[0].index_select(1, flat).unflatten(1, (batch, width)).transpose(0, 1)

    def with_prefix(x):
        rest = per_row(x[:, :, cached:])
        return torch.cat([x[:, :, :cached].expand(batch, -1, -1, -1), rest], dim=2)

    groups = query.shape[1] // key.shape[1]
    # a sliding-window layer: passed by the attention module (Mistral), or its attribute (Qwen2)
    window = kwargs.get("sliding_window") or getattr(module, "sliding_window", None)
    out = torch.nn.functional.scaled_dot_product_attention(
        per_row(query), repeat_kv(with_prefix(key), groups), repeat_kv(with_prefix(value), groups),
        attn_mask=rows.attention_mask(cached, window),
        dropout_p=dropout, scale=scaling)
    out = out.transpose(1, 2).flatten(0, 1)  # [B * L, H, D], row after row
    return out[rows.valid.reshape(-1)].unsqueeze(0), None


def _no_mask(*args, **kwargs):
    return None  # the packed attention builds its own per-row mask


AttentionInterface.register(ATTENTION, _packed_attention)
AttentionMaskInterface.register(ATTENTION, _no_mask)


def accepts(model, argument: str) -> bool:
    """Whether `model.forward` (inside a DDP wrapper, the model's) names `argument`."""
    return argument in inspect.signature(getattr(model, "module", model).forward).parameters


def cache_argument(model) -> str | None:
    """The name under which `model.forward` takes a KV cache to continue: `cache` in newer
    transformers 5 releases, `past_key_values` before (still accepted through **kwargs, with a
    deprecation warning, so only the signature tells which one is current); None for neither."""
    return next((name for name in ("cache", "past_key_values") if accepts(model, name)), None)


def cache_kwargs(model, cache) -> dict:
    """`{name: cache}` for `model.forward`'s cache argument (nothing when `cache` is None)."""
    return {} if cache is None else {cache_argument(model) or "past_key_values": cache}


def transformer(model) -> PreTrainedModel | None:
    """The transformers model doing the work: unwrapped from DDP, a critic's backbone."""
    model = getattr(model, "module", model)
    if not isinstance(model, PreTrainedModel):
        model = getattr(model, "backbone", None)  # the critics of framework_plugins.ppo
    return model if isinstance(model, PreTrainedModel) else None


def supported(model) -> bool:
    """Whether `model`'s attention goes through transformers' attention interface as plain
    `sdpa` (what the packed attention computes per row; a model set to another implementation,
    or one sdpa cannot serve, such as logit soft-capping, takes the plain pass)."""
    inner = transformer(model)
    return (inner is not None and bool(getattr(inner, "_supports_attention_backend", False))
            and inner.config._attn_implementation == "sdpa")


@contextlib.contextmanager
def _attention(config, rows: PackedRows):
    configs = [config, *(getattr(config, key, None) for key in getattr(config, "sub_configs", {}))]
    configs = [c for c in configs if c is not None]
    saved = [c._attn_implementation_internal for c in configs]
    token = _ACTIVE.set(rows)
    try:
        for c in configs:
            c._attn_implementation_internal = ATTENTION
        yield
    finally:
        for c, value in zip(configs, saved):
            c._attn_implementation_internal = value
        _ACTIVE.reset(token)


def forward(model, rows: PackedRows, **kwargs):
    """`model` on the packed rows (after their shared prefix, run here first into a KV cache
    when `rows.prefix_ids` is set)."""
    cache = {}
    if rows.prefix_ids is not None:
        cache = cache_kwargs(model, DynamicCache())  # filled in place by the prefix pass
        one_logit = {"logits_to_keep": 1} if "logits_to_keep" in kwargs else {}
        model(input_ids=rows.prefix_ids, use_cache=True, **cache, **one_logit)
    with _attention(transformer(model).config, rows):
        return model(input_ids=rows.input_ids[None], position_ids=rows.position_ids[None],
                     use_cache=bool(cache), **cache, **kwargs)
