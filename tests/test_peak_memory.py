"""A stage's peak memory is its own: the process's peak is reset before each stage."""

from __future__ import annotations

import pytest

from framework.common import peak_memory


@pytest.mark.skipif(not peak_memory._reset(), reason="the platform cannot reset the peak RSS")
def test_each_block_measures_its_own_peak():
    with peak_memory.measure() as big:
        block = bytearray(300 * 1024 * 1024)
        block[::4096] = b"x" * len(block[::4096])  # touch every page: resident
        resident_with_block = peak_memory._hwm_mib()
        del block
    with peak_memory.measure() as small:
        pass
    # the kernel's RSS counters are synced lazily, to within a few pages
    assert big["peak_rss_mib"] >= resident_with_block - 1
    assert resident_with_block > small["peak_rss_mib"] + 250
