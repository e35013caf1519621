"""A stage's peak memory is its own: the process's peak is reset before each stage."""

from __future__ import annotations

import subprocess
import sys

import pytest

from framework.common import peak_memory

# In a fresh interpreter: the suite's other tests may tell glibc to keep freed memory
# (framework/hardware/cpu_allocator.py), which would keep the first block's pages resident.
SCRIPT = """
from framework.common import peak_memory
with peak_memory.measure() as big:
    block = bytearray(300 * 1024 * 1024)
    block[::4096] = b"x" * len(block[::4096])  # touch every page: resident
    resident_with_block = peak_memory._hwm_mib()
    del block
with peak_memory.measure() as small:
    pass
print(big["peak_rss_mib"], resident_with_block, small["peak_rss_mib"])
"""


@pytest.mark.skipif(not peak_memory._reset(), reason="the platform cannot reset the peak RSS")
def test_each_block_measures_its_own_peak():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         check=True).stdout
    big, resident_with_block, small = map(float, out.split())
    # the kernel's RSS counters are synced lazily, to within a few pages
    assert big >= resident_with_block - 1
    assert resident_with_block > small + 250
