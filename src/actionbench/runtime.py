"""Process set-up shared by every command that runs models: where per-user caches live, and how the C allocator
treats freed memory.

glibc hands every allocation above its mmap threshold (at most 32 MB) to `mmap` and gives it back on `free`, so
each new activation tensor of a training step (100 MB for a ResNet-50 block input at batch 4, 8 frames) is
page-faulted and zero-filled by the kernel again: 28 ms to allocate and fill one such tensor against 6 ms to fill
one the process kept (measured; docs/performance.md). Training and evaluation allocate the same sizes every step,
so keeping freed memory in the process, as PyTorch's CUDA caching allocator does on GPUs, makes allocation nearly
free. The price: the process's resident memory stays at its peak (which a training run reaches in its first steps).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters (malloc.h)
_applied = False


def user_cache_dir(kind: str) -> Path | None:
    """`$XDG_CACHE_HOME/actionbench/<kind>` (~/.cache/... by default), or None for a user without a home folder
    (e.g. a container user), where a "~" folder would be created in the working directory instead."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return None if base.startswith("~") else Path(base) / "actionbench" / kind


def retain_freed_memory() -> bool:
    """Ask glibc's malloc to serve large blocks from its heap and keep what is freed; True if it took effect.

    A no-op (False) off Linux/glibc, or when `ACTIONBENCH_MALLOC=default` is set. Idempotent. Threads other than
    the main one still fall back to mmap for blocks larger than their arena, as before.
    """
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("ACTIONBENCH_MALLOC", "retain") == "default":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 2**30) == 1
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    if not ok:
        log.debug("mallopt refused; the allocator keeps its defaults")
    _applied = ok
    return ok
