"""Sampling on a CPU: the decode steps' linear layers and token draws in their faster forms.

A decode step runs every linear layer on a few rows (one new token per sequence). For such thin
products the CPU BLAS that torch ships (MKL) can be much slower computing `x @ W^T`, the form
`F.linear` asks for, than `W @ x^T` transposed back, the same numbers up to float rounding. On
this project's 2-core AMD EPYC machine, for 8 rows: 53 -> 39 ms for the 60 MLP input projections
of SmolLM2-135M, 35 -> 25 ms for its LM head; `framework.rollout.generate` of 8 x 48 tokens took
12.6 -> 11.2 s (means of 5, interleaved). Which form wins depends on the CPU and the BLAS, so
the first generation with a given model and row count times both on its largest layer and keeps
the faster.

Each step then draws one token per row. `torch.multinomial(probs, 1)` on a CPU draws one
exponential variate per vocabulary entry (12 ms a step for 8 rows over SmolLM2's 49152
tokens); the inverse CDF, one uniform per row looked up in the rows' cumulative sums, draws from
the same distribution: `rollout.generate` of 8 x 48 tokens 10.6 -> 9.4 s (means of 5,
interleaved). On other devices nothing changes.
"""

from __future__ import annotations

import contextlib
import logging
import time

import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

logger = logging.getLogger(__name__)

MAX_ROWS = 32  # above this the usual form was as fast or faster
MIN_GAIN = 0.85  # keep the streamed form only when it takes at most this share of the time
_decisions: dict[tuple, bool] = {}


class CpuDecoding(TorchFunctionMode):
    """Inside it, on CPU tensors: `torch.multinomial(probs, 1)` draws by inverse CDF
    (`inverse_cdf`) and, with `streamed_linear`, `F.linear` on 2 to MAX_ROWS rows without
    autograd runs as `(W @ x^T)^T`; everything else (training, long inputs, other devices) as
    usual. One mode for both: every torch call of the decode loop passes through it."""

    def __init__(self, streamed_linear: bool = True):
        super().__init__()
        self.streamed_linear = streamed_linear

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear and self.streamed_linear:
            named = dict(zip(("input", "weight", "bias"), args), **kwargs)
            x, weight = named.get("input"), named.get("weight")
            tensors = isinstance(x, torch.Tensor) and isinstance(weight, torch.Tensor)
            if tensors and streams(x, weight):
                return streamed(x, weight, named.get("bias"))
        elif func is torch.multinomial:
            named = dict(zip(("input", "num_samples", "replacement"), args), **kwargs)
            probs = named.get("input")
            if (named.get("num_samples") == 1 and named.get("out") is None
                    and isinstance(probs, torch.Tensor) and probs.device.type == "cpu"
                    and probs.dim() in (1, 2) and probs.dtype.is_floating_point):
                drawn = inverse_cdf(probs, named.get("generator"))
                if drawn is not None:
                    return drawn
        return func(*args, **kwargs)


def inverse_cdf(probs: torch.Tensor, generator: torch.Generator | None = None
                ) -> torch.Tensor | None:
    """One index per row of `probs` (non-negative weights, not necessarily normalized), drawn
    with probability proportional to its weight: shaped as `torch.multinomial(probs, 1)`. None
    for weights multinomial refuses (negative, inf, nan, an all-zero row), so that it raises
    its own error."""
    cdf = probs.double().cumsum(-1)  # float64: a token's share is its step, even the tiny ones
    total = cdf[..., -1:]
    if not (bool(torch.isfinite(total).all()) and bool((total > 0).all())
            and float(probs.min()) >= 0):
        return None
    u = torch.rand(total.shape, dtype=cdf.dtype, device=cdf.device, generator=generator) * total
    u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))  # strictly below
    # the first index whose cumulative sum exceeds u: a zero-weight token adds no step, so it
    # is never the first to pass u
    return torch.searchsorted(cdf, u, right=True)


def streams(x: torch.Tensor, weight: torch.Tensor) -> bool:
    rows = x.numel() // max(x.shape[-1], 1)
    return (1 < rows <= MAX_ROWS and x.device.type == "cpu" and weight.dim() == 2
            and weight.dtype == x.dtype and x.dtype.is_floating_point
            and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)))


def streamed(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    out = torch.mm(weight, x.reshape(-1, x.shape[-1]).t()).t()
    if bias is not None:
        out = out + bias
    return out.reshape(*x.shape[:-1], weight.shape[0])


def faster(weight: torch.Tensor, rows: int, repeats: int = 5) -> bool:
    """Whether the streamed form beats `F.linear` on `weight` for `rows` rows (best of
    `repeats`, interleaved so that background load falls on both)."""
    # its own generator: timing must not move the global RNG that sampling (and resuming) use
    x = torch.randn(rows, weight.shape[1], dtype=weight.dtype,
                    generator=torch.Generator().manual_seed(0))
    best = {"plain": float("inf"), "streamed": float("inf")}
    with torch.no_grad():
        for _ in range(repeats):
            for name, run in (("plain", lambda: F.linear(x, weight)),
                              ("streamed", lambda: streamed(x, weight, None))):
                start = time.perf_counter()
                run()
                best[name] = min(best[name], time.perf_counter() - start)
    keep = best["streamed"] <= MIN_GAIN * best["plain"]
    logger.debug("decode products of %d rows on %s weights: F.linear %.2f ms, (W @ x^T)^T %.2f "
                 "ms; sampling uses %s", rows, tuple(weight.shape), best["plain"] * 1e3,
                 best["streamed"] * 1e3, "(W @ x^T)^T" if keep else "F.linear")
    return keep


def largest_weight(model) -> torch.Tensor | None:
    """The largest plain floating-point weight of the model's Linear layers (its LM head)."""
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)
               and m.weight.dim() == 2 and m.weight.dtype.is_floating_point]
    return max(weights, key=torch.Tensor.numel, default=None)


@contextlib.contextmanager
def decoding(model, rows: int):
    """The context for `model.generate` on `rows` sequences of a model on a CPU: CpuDecoding,
    with the streamed linear form where it was timed faster for this model and row count on
    this CPU; elsewhere nothing."""
    weight = largest_weight(model)
    if weight is None or weight.device.type != "cpu":
        yield
        return
    use = False
    if 1 < rows <= MAX_ROWS:
        key = (tuple(weight.shape), weight.dtype, rows, torch.get_num_threads())
        if key not in _decisions:
            _decisions[key] = faster(weight.detach(), rows)
        use = _decisions[key]
    with CpuDecoding(streamed_linear=use):
        yield
