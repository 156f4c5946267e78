"""How a CPU process keeps the memory it frees: for reuse, instead of handing it back to the OS.

An MD step on CPU allocates and frees the same large arrays every step (the
pairs' radial weights, the edge-sized gradients: tens of MB at 2000 atoms).
glibc's ``malloc`` serves blocks above 128 kB to 32 MB (its adaptive threshold)
with fresh ``mmap`` pages and returns them to the OS on ``free``, so every step
pays a page fault per 4 kB of them again. ``keep_freed_memory`` tells glibc to
serve them from its heap and to keep up to 512 MiB of freed memory at the top
of the heap: on the reference NequIP model that made a 2000-atom step 20 %
(float32) to 35 % (float64) faster on 2 cores (``benchmarks/md_step.py``). The
cost: the process's resident memory shrinks less after a large calculation.

``EquiCalc`` calls it for CPU calculators (``keep_freed_memory=False`` opts
out); training on CPU calls it too.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import platform

__all__ = ["keep_freed_memory"]

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_applied = []  # [result] once called


def keep_freed_memory() -> bool:
    """Make glibc's ``malloc`` serve blocks up to 1 GiB from its heap and keep up to 512 MiB of freed memory at
    the top of the heap (process-wide; once per process). Returns whether it applies: False where the C library
    is not glibc."""
    if not _applied:
        _applied.append(_set_glibc_options())
    return _applied[0]


def _set_glibc_options() -> bool:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 512 << 20))
