"""Keep freed memory inside the process while training on a CPU (glibc malloc).

By default glibc hands large freed blocks back to the kernel at once: every tensor above the
mmap threshold (128 KiB at first) is its own mapping, and the top of the heap is trimmed. A
training loop allocates the same activations step after step, so each forward and backward
pays the page faults of zeroing the same gigabytes again. Keeping freed blocks for reuse made a
PPO step of SmolLM2-135M on a 2-core CPU 20% faster (tests/benchmarks: 71.5 s -> 57.5 s) with
the same peak RSS: the memory was needed at the peak anyway. It is returned when the process
ends. Other C libraries (musl) and other systems are left as they are.
"""

from __future__ import annotations

import ctypes
import logging
import sys

logger = logging.getLogger(__name__)

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
LARGEST = 2**31 - 1  # mallopt takes an int


def keep_freed_memory() -> bool:
    """Tell glibc to serve allocations from its heap and never trim it. Returns whether it
    applied (Linux with glibc only); safe to call more than once."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    applied = all(mallopt(param, value) == 1 for param, value in (
        (M_MMAP_THRESHOLD, LARGEST), (M_TRIM_THRESHOLD, LARGEST), (M_TOP_PAD, 1 << 30)))
    if applied:
        logger.debug("glibc malloc keeps freed memory for reuse (CPU training)")
    return applied
