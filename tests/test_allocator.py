"""The allocator setting that stops big feature maps from being faulted in afresh on every pass."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

import methods.lama
from methods.lama import LaMa

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


@pytest.mark.parametrize("optimize", [True, False])
def test_only_the_optimised_lama_path_retains_freed_memory(optimize: bool, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(methods.lama, "retain_freed_memory", lambda: calls.append(1) or True)
    flat = {"ratio_gin": 0, "ratio_gout": 0, "enable_lfu": False}
    config = {"input_nc": 4, "output_nc": 3, "ngf": 8, "n_downsampling": 2, "n_blocks": 1, "add_out_act": "sigmoid",
              "init_conv_kwargs": flat, "downsample_conv_kwargs": flat,
              "resnet_conv_kwargs": {"ratio_gin": 0.75, "ratio_gout": 0.75, "enable_lfu": False}}
    LaMa.with_random_weights(config, device="cpu", optimize=optimize)
    assert len(calls) == int(optimize)
