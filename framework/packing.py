"""Padding-free forward passes over a rollout: each real token once.

A rollout is laid out as `[left pad | prompt | response | pad after the EOS]`, and a plain pass
runs the model on every column. Here the rows' real tokens go through the model as one packed
sequence `[1, N]` instead: the linear layers, norms and LM head, nearly all of the compute, see N
real tokens and no padding. Only attention must keep the rows apart; it runs per row on a padded
copy of queries, keys and values (a few percent of the compute), through an attention
implementation registered with transformers ("packed_rows") that a pass selects for its duration.
A rollout pass reads the outputs before each response token, so each row's last token, whose
output nothing reads, is left out (`PackedRows.of`); a reward model's pass reads each row's last
token (`PackedRows.last_tokens`, used by framework_plugins/reward_sources/reward_model.py).

A prompt prefix shared by every row (a chat template's system block) is packed once, at the
start of the sequence, and every row's queries attend to it as well as to their own tokens; each
row keeps its own positions, so it sees exactly the tokens and positions of its plain pass.
Outputs equal the plain pass up to float rounding (tests/test_rollout.py) and autograd flows
through all of it. (The prefix goes into the one pass rather than a KV cache filled beforehand: a
separate pass of a few tokens runs every weight through small, slow matrix products forward and
backward, and its weight gradients must then be added to the main pass's.)

Models qualify when they route attention through transformers' attention interface
(`_supports_attention_backend`: Llama, Qwen, Mistral, Gemma and most current architectures) and
run it as `sdpa` (transformers' default); sliding-window layers keep their window. Others take
the plain padded pass (framework/rollout.py).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from dataclasses import dataclass

import torch
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import repeat_kv
from transformers.masking_utils import AttentionMaskInterface
from transformers.utils.import_utils import is_torch_greater_or_equal

ATTENTION = "packed_rows"


@dataclass
class PackedRows:
    """Where each row's tokens sit in the packed sequence `[shared prefix | row 0 | row 1 ...]`."""

    input_ids: torch.Tensor  # [prefix + N] the shared prefix, then each row's other real tokens
    position_ids: torch.Tensor  # [prefix + N] each token's position in its own row
    slots: torch.Tensor  # [B, L] packed index of each row's l-th token after the prefix
    valid: torch.Tensor  # [B, L] bool, l < the row's token count (slots past it: 0, unused)
    response_index: torch.Tensor  # [B, T] packed index of the output that predicts response token t
    prefix: int = 0  # how many leading packed tokens every row shares

    @classmethod
    def of(cls, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_length: int,
           response_width: int, shared_prefix: int) -> PackedRows:
        """The layout of a left-padded `[prompt | response]` batch for outputs read at the
        tokens before each response token; `shared_prefix` leading real tokens are common to
        every row and packed once (0: none). Each row's last real token is left out: its output
        would predict the token after the row, and no later token attends to it."""
        real = attention_mask.bool()
        seen = real.long().cumsum(1)  # real tokens up to and including each column
        last = real & (seen == seen[:, -1:])
        keep = real & ~last & (seen > shared_prefix)
        # response token t is predicted by column prompt_length - 1 + t; past a row's last kept
        # token (its end, padding after an EOS) the row's last output stands in (callers mask it)
        columns = prompt_length - 1 + torch.arange(response_width, device=input_ids.device)
        return cls._packed(input_ids, real, seen, keep, columns, shared_prefix)

    @classmethod
    def last_tokens(cls, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    shared_prefix: int) -> PackedRows:
        """The layout of a padded batch (either side) read at each row's last real token (a
        reward model's score): `response_index` [B, 1]."""
        real = attention_mask.bool()
        seen = real.long().cumsum(1)
        keep = real & (seen > shared_prefix)
        columns = torch.tensor([input_ids.shape[1] - 1], device=input_ids.device)
        return cls._packed(input_ids, real, seen, keep, columns, shared_prefix)

    @classmethod
    def _packed(cls, input_ids, real, seen, keep, columns, shared_prefix) -> PackedRows:
        """Rows' `keep` tokens packed after the shared prefix; outputs read at `columns`."""
        lengths = keep.sum(1)
        offsets = shared_prefix + lengths.cumsum(0) - lengths
        width = int(lengths.max())
        steps = torch.arange(width, device=input_ids.device)[None, :]
        valid = steps < lengths[:, None]
        slots = torch.where(valid, offsets[:, None] + steps, 0)
        before = (keep.long().cumsum(1) - 1)[:, columns]  # kept tokens before, in the row
        response_index = offsets[:, None] + torch.minimum(before, lengths[:, None] - 1)
        first = int(real[0].long().argmax())  # row 0's first real token
        prefix_ids = input_ids[0, first: first + shared_prefix]
        return cls(
            input_ids=torch.cat([prefix_ids, input_ids[keep]]),
            position_ids=torch.cat([torch.arange(shared_prefix, device=input_ids.device),
                                    (seen - 1)[keep]]),
            slots=slots, valid=valid, response_index=response_index, prefix=shared_prefix)

    def attention_mask(self, window: int | None = None) -> torch.Tensor:
        """[B, 1, L, prefix + L] bool: every row sees the shared prefix and its own earlier
        tokens (within the last `window` positions for a sliding-window layer)."""
        rows, width = self.valid.shape
        steps = torch.arange(width, device=self.valid.device)
        causal = (steps[None, :, None] >= steps[None, None, :]) & self.valid[:, None, :]
        mask = torch.cat([causal.new_ones(rows, width, self.prefix), causal], dim=2)
        if window is not None:  # query at position prefix + t, key at position k
            keys = torch.arange(self.prefix + width, device=self.valid.device)
            mask &= (self.prefix + steps[:, None] - keys[None, :] < window)[None]
        return mask[:, None]

    def prefix_mask(self, window: int | None = None) -> torch.Tensor | None:
        """[1, 1, prefix, prefix] bool for the prefix's own (causal) attention; None without a
        sliding window, where sdpa's `is_causal` says the same."""
        if window is None:
            return None
        steps = torch.arange(self.prefix, device=self.valid.device)
        gap = steps[:, None] - steps[None, :]
        return ((gap >= 0) & (gap < window))[None, None]


def shared_prefix_length(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> int:
    """How many leading real tokens all rows of a left-padded prompt batch share, leaving every
    row at least one token of its own (0 for a single row)."""
    lengths = attention_mask.sum(1)
    if len(input_ids) < 2:
        return 0
    width = input_ids.shape[1]
    shortest = int(lengths.min())
    # each row's real tokens, left-aligned, cut to the shortest row
    starts = width - lengths
    cols = starts[:, None] + torch.arange(shortest, device=input_ids.device)[None, :]
    real = torch.gather(input_ids, 1, cols)
    same = (real == real[:1]).all(0).long()
    n = int(same.cumprod(0).sum())
    return max(0, min(n, shortest - 1))


_ACTIVE: contextvars.ContextVar[PackedRows | None] = contextvars.ContextVar("packed_rows",
                                                                           default=None)


def _packed_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                      **kwargs):
    """Attention of a packed pass: query [1, H, prefix + N, D]; key and value
    [1, Hkv, prefix + N, D]. Returns [1, prefix + N, H, D] as transformers' implementations do."""
    rows = _ACTIVE.get()
    if rows is None:
        raise RuntimeError(f"The '{ATTENTION}' attention implementation runs only inside "
                           f"framework.packing.forward.")
    unsupported = [k for k in ("position_bias", "softcap", "s_aux") if kwargs.get(k) is not None]
    if unsupported:  # sdpa itself refuses these; say so rather than compute something else
        raise NotImplementedError(f"Packed rollout passes do not support attention with "
                                  f"{', '.join(unsupported)}; this model needs the plain pass.")
    batch, width = rows.slots.shape
    prefix = rows.prefix
    flat = rows.slots.reshape(-1)
    groups = query.shape[1] // key.shape[1]
    # a sliding-window layer: passed by the attention module (Mistral), or its attribute (Qwen2)
    window = kwargs.get("sliding_window") or getattr(module, "sliding_window", None)
    sdpa = _grouped_sdpa(groups, query.device)

    def per_row(x):  # [1, heads, prefix + N, D] -> [B, heads, L, D]: each row's own tokens
        return x[0].index_select(1, flat).unflatten(1, (batch, width)).transpose(0, 1)

    def with_prefix(x):  # every row's keys (values): the shared prefix's, then its own
        own = per_row(x)
        if prefix:
            own = torch.cat([x[:, :, :prefix].expand(batch, -1, -1, -1), own], dim=2)
        return own

    out = sdpa(per_row(query), with_prefix(key), with_prefix(value),
               attn_mask=rows.attention_mask(window), dropout_p=dropout, scale=scaling)
    out = out.transpose(1, 2).flatten(0, 1)[rows.valid.reshape(-1)]  # [N, H, D], row after row
    if prefix:  # the prefix attends to itself only
        mask = rows.prefix_mask(window)
        head = sdpa(query[:, :, :prefix], key[:, :, :prefix], value[:, :, :prefix],
                    attn_mask=mask, is_causal=mask is None, dropout_p=dropout, scale=scaling)
        out = torch.cat([head[0].transpose(0, 1), out])
    return out.unsqueeze(0), None


def _grouped_sdpa(groups: int, device: torch.device):
    """sdpa for `groups` query heads per key/value head. On a CPU sdpa reads each group's shared
    key/value head itself (`enable_gqa`, torch >= 2.5): the same numbers without copying keys and
    values per query head or summing their gradients back (18.6 -> 15.7 ms a layer forward and
    backward on the benchmark's rows). Elsewhere the heads are repeated, as transformers does:
    CUDA serves masked grouped attention only with its slow math kernel."""
    sdpa = torch.nn.functional.scaled_dot_product_attention
    if groups == 1:
        return sdpa
    if device.type == "cpu" and is_torch_greater_or_equal("2.5"):
        return functools.partial(sdpa, enable_gqa=True)

    def repeated(query, key, value, **kwargs):
        return sdpa(query, repeat_kv(key, groups), repeat_kv(value, groups), **kwargs)
    return repeated


def _no_mask(*args, **kwargs):
    return None  # the packed attention builds its own per-row mask


AttentionInterface.register(ATTENTION, _packed_attention)
AttentionMaskInterface.register(ATTENTION, _no_mask)


def transformer(model) -> PreTrainedModel | None:
    """The transformers model doing the work: unwrapped from DDP, a critic's backbone."""
    model = getattr(model, "module", model)
    if not isinstance(model, PreTrainedModel):
        model = getattr(model, "backbone", None)  # the critics of framework_plugins.optimizers.ppo
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
    """`model` on the packed rows: one pass, the shared prefix included."""
    with _attention(transformer(model).config, rows):
        return model(input_ids=rows.input_ids[None], position_ids=rows.position_ids[None],
                     use_cache=False, **kwargs)
