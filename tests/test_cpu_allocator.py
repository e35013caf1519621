"""framework.hardware.cpu_allocator: on glibc, freed memory stays in the process for reuse
(no page faults for the next step's activations). Checked in a fresh interpreter each time, so
this test process keeps the default allocator."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import sys
from framework.hardware.cpu_allocator import keep_freed_memory
def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
before = rss_mb()
block = bytearray(300 * 2**20)  # 300 MiB, zero-filled: every page touched
del block
print(applied, rss_mb() - before)
"""


def retained_mb(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_freed_memory_is_kept_for_reuse_only_when_asked():
    assert retained_mb("default")[1] < 50  # glibc gives the 300 MiB back at once
    applied, retained = retained_mb("keep")
    if applied != "True":
        pytest.skip("not glibc: keep_freed_memory does not apply here")
    assert retained >= 290  # kept, ready for the next allocation of that size
