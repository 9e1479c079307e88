"""Process memory-allocator setting for CPU inference of the large convolutional generators.

glibc's malloc hands big blocks to the system on every free and maps fresh ones on the next
request: blocks at or above its adaptive "mmap threshold" (which follows the size of the last
mapped block freed, up to 32 MB) and everything above 32 MB. Every page of such a block is then
faulted in and zeroed by the kernel again. A big-lama forward pass at 512x512 allocates its
64 MB full-resolution maps and, through the adaptive threshold, one 6.3 MB bottleneck map per
layer this way: about 50,000 page faults, ~100 ms of its ~2.2 s on one core.

`retain_freed_memory` makes malloc serve blocks below a fixed size from its heap and keep that
much freed memory for reuse. The cost: the process keeps up to that amount of freed memory
instead of returning it (its peak resident memory is unchanged; its resident memory after a pass
stays near that peak). Values computed are unchanged.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

#: glibc ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3

#: Blocks below this size come from malloc's heap, and up to this much freed memory is kept.
RETAINED_BYTES = 256 * 1024 * 1024

_applied = False


def retain_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks below `RETAINED_BYTES` (and up to that much free memory) for reuse.

    Process-wide and idempotent; other C libraries are left alone.

    Returns
    -------
    bool
        Whether the setting is in effect (``False`` outside glibc or if glibc refused it).
    """
    global _applied
    if _applied:
        return True
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    # mallopt returns 1 on success; a fixed mmap threshold also stops glibc's adaptive one.
    _applied = (libc.mallopt(_M_MMAP_THRESHOLD, RETAINED_BYTES) == 1
                and libc.mallopt(_M_TRIM_THRESHOLD, RETAINED_BYTES) == 1)
    return _applied
