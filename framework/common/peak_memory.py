"""Peak resident memory of one stage, recorded in its summary entry.

`ru_maxrss` only grows over a process's life, so the peak of a later stage would include every
earlier one's. On Linux, writing 5 to /proc/self/clear_refs resets the peak (VmHWM) to the current
resident size, so each stage measures its own. Processes that a stage launches (accelerate) are
counted through RUSAGE_CHILDREN, whose maximum is the largest child so far."""

from __future__ import annotations

import contextlib
import resource
from pathlib import Path
from typing import Iterator, Optional

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _hwm_mib() -> Optional[float]:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def _reset() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


@contextlib.contextmanager
def measure() -> Iterator[dict]:
    """Yields a dict that holds, after the block, `peak_rss_mib`: the largest resident size of
    this process (or of a process it launched) during the block; None where the platform cannot
    reset the peak, rather than a number that includes earlier stages."""
    result: dict = {"peak_rss_mib": None}
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    resettable = _reset()
    try:
        yield result
    finally:
        peaks = []
        if resettable:
            peaks.append(_hwm_mib())
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if children > children_before:  # a launched process outgrew every earlier child
            peaks.append(children / 1024)
        peaks = [p for p in peaks if p is not None]
        result["peak_rss_mib"] = round(max(peaks), 1) if peaks else None
