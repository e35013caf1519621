"""One `python -m framework` per run directory: a second one would write the same checkpoints,
models and manifests at once.

The lock is an flock on `<run>/.lock` (the filelock package), which the kernel releases when its
process dies, even by kill -9: a killed run never leaves a lock that blocks the next. The file
records who holds it (pid, host, start time) for the message a second process gets.
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from framework.errors import ConfigError

LOCK = ".lock"
HOLDER = ".lock.holder.json"


@contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    from filelock import FileLock, Timeout

    run_dir = Path(run_dir)
    lock = FileLock(str(run_dir / LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ConfigError(
            f"hydra.run.dir: {run_dir} is in use by another run ({_holder(run_dir)}). Wait for "
            f"it to finish or stop it, or choose another directory with hydra.run.dir=DIR."
        ) from None
    holder = run_dir / HOLDER
    holder.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "started": time.strftime("%Y-%m-%d %H:%M:%S")}),
                      encoding="utf-8")
    try:
        yield
    finally:
        holder.unlink(missing_ok=True)
        lock.release()


def _holder(run_dir: Path) -> str:
    try:
        data = json.loads((run_dir / HOLDER).read_text(encoding="utf-8"))
        return f"pid {data['pid']} on {data['host']}, started {data['started']}"
    except (OSError, ValueError, KeyError):
        return "its pid is not recorded yet"
