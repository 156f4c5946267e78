"""One thread count for torch and equicalc's CPU kernels (numba)."""
from __future__ import annotations

from typing import Optional

import numba
import torch

__all__ = ["match_threads"]


def match_threads(n: Optional[int] = None) -> None:
    """Run torch and the CPU kernels on ``n`` threads (default: torch's count, which ``OMP_NUM_THREADS`` sets).

    Both share one OpenMP runtime, and numba's thread pool, when it starts, sets the OpenMP thread count to
    ``NUMBA_NUM_THREADS`` (every core): without this, ``OMP_NUM_THREADS=1`` would run torch on every core once
    the first kernel has run. The kernels use at most ``NUMBA_NUM_THREADS``.
    """
    n = n or torch.get_num_threads()
    numba.get_num_threads()  # starts numba's pool the first time, which changes torch's count
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
