"""The total gradient norm of a set of parameters: the divergence checks of every trainer use it."""

from __future__ import annotations


def gradient_norm(parameters) -> float:
    """The total L2 norm of the parameters' gradients (0.0 when none has one)."""
    import torch

    grads = [p.grad.detach() for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    if hasattr(torch.nn.utils, "get_total_norm"):  # torch >= 2.6: foreach kernels
        return float(torch.nn.utils.get_total_norm(grads))
    device = grads[0].device
    return float(torch.stack([g.float().norm().to(device) for g in grads]).norm())
