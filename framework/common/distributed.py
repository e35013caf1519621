"""What stage code needs to stay correct in several processes: this process's rank, splitting
work across ranks and gathering it back, and broadcasting one rank's value. Every helper also
works in a single process (no process group), where it is the identity.

Diagnostics: with FRAMEWORK_RANK_RECORDS=DIR set, each launched process writes what it
`record`s (its metrics, digests of its final weights, the files it wrote) to
DIR/STAGE.rankN.json; tests use this to check that ranks agree and that one rank writes.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Sequence

RECORDS_ENV = "FRAMEWORK_RANK_RECORDS"
_records: dict[str, Any] = {}


def _group_ready() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    if _group_ready():
        import torch.distributed as dist

        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    if _group_ready():
        import torch.distributed as dist

        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return rank() == 0


def shard(items: Sequence) -> list:
    """This rank's contiguous share of `items` (ranks in order cover them in order)."""
    size, r = world_size(), rank()
    per = -(-len(items) // size)  # ceil
    return list(items[r * per:(r + 1) * per])


def gather(values: list) -> list:
    """Every rank's `values` concatenated in rank order, on every rank (the inverse of shard)."""
    if world_size() == 1 or not _group_ready():
        return list(values)
    import torch.distributed as dist

    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, list(values))
    return [v for part in parts for v in part]


def broadcast(value: Any, src: int = 0) -> Any:
    """Rank `src`'s value, on every rank."""
    if world_size() == 1 or not _group_ready():
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    if world_size() > 1 and _group_ready():
        import torch.distributed as dist

        dist.barrier()


# ------------------------------------------------------------------------------- diagnostics
def recording() -> bool:
    return bool(os.environ.get(RECORDS_ENV))


def record(key: str, value: Any) -> None:
    """Keep `value` for this process's diagnostics record (a no-op unless recording)."""
    if recording():
        _records[key] = value


def record_weights(key: str, model) -> None:
    """Record a digest of a model's weights as this process holds them (only when recording:
    it reads every parameter)."""
    if recording():
        _records[f"weights.{key}"] = weights_digest(model)


def records() -> dict[str, Any]:
    return dict(_records)


def weights_digest(model) -> str:
    """sha256 over every parameter and buffer, by name: equal digests mean equal weights."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()
