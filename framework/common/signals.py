"""SIGINT and SIGTERM stop a run cleanly: the running stage saves a checkpoint and stops at its
next step boundary, instead of dying mid-write.

`stop_on_signals()` (the runner wraps the whole pipeline in it) replaces the two handlers with
one that only sets a flag, and puts the previous handlers back on exit. Training loops poll
`stop_requested()` at step boundaries (TRL stages through framework.trl.training's callback,
PPO in its loop); the stage then raises TrainingInterrupted. A second signal while the first is
being honoured stops at once (KeyboardInterrupt), without a checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Iterator, Optional

log = logging.getLogger("framework")

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_received: Optional[int] = None  # the signal number of the pending stop request


def stop_requested() -> Optional[str]:
    """The name of the signal that asked this process to stop ("SIGTERM"), or None."""
    return signal.Signals(_received).name if _received is not None else None


def stop_requested_anywhere() -> Optional[str]:
    """`stop_requested()`, agreed across the processes of a distributed run: every process must
    stop at the same step, or the others would wait forever in their next collective."""
    name = stop_requested()
    if not _distributed():
        return name
    import torch
    import torch.distributed as dist

    flag = torch.tensor([_received or 0], device=_device())
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return signal.Signals(int(flag.item())).name if int(flag.item()) else None


def any_process(value: bool) -> bool:
    """True if `value` is true on any process (the value itself when not distributed)."""
    if not _distributed():
        return bool(value)
    import torch
    import torch.distributed as dist

    flag = torch.tensor([1 if value else 0], device=_device())
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def signal_number(name: str) -> int:
    return int(signal.Signals[name])


def clear() -> None:
    """Forget a pending request (the runner does this once it has reported it)."""
    global _received
    _received = None


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM request a clean stop; the previous handlers come back
    afterwards. Outside the main thread (where Python cannot install handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    clear()
    for sig in SIGNALS:
        signal.signal(sig, _handle)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        clear()


def _handle(signum, frame) -> None:
    global _received
    name = signal.Signals(signum).name
    if _received is not None:
        raise KeyboardInterrupt(f"second stop signal ({name}): stopping at once, without saving "
                                f"a checkpoint")
    _received = signum
    log.warning("%s received: saving a checkpoint and stopping at the next step boundary "
                "(send it again to stop at once, without a checkpoint)", name)


def _distributed() -> bool:
    try:
        import torch.distributed as dist
    except ImportError:
        return False
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _device():
    import torch
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
