"""The allocator setting that stops big feature maps from being faulted in afresh on every pass."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

# Allocates, touches and frees a 64 MB block four times; prints the page faults of the last three.
_FAULTS = """
import resource, sys
from methods.nets.allocator import retain_freed_memory
if sys.argv[1] == "retain":
    assert retain_freed_memory() and retain_freed_memory()
block = bytearray(64 << 20)
del block
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    block = bytearray(64 << 20)
    del block
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc setting")
def test_retained_memory_is_reused_without_page_faults() -> None:
    def faults(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
        return int(done.stdout)

    pages = 3 * (64 << 20) // 4096
    assert faults("default") >= pages // 2  # glibc maps blocks this big afresh each time
    assert faults("retain") < pages // 20
