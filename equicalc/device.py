"""Where and in which precision models run: one resolver for devices and one for dtypes."""
from __future__ import annotations

import torch

__all__ = ["resolve_device", "resolve_dtype", "dtype_name"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(device="auto") -> torch.device:
    """A torch device from ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...

    Raises ``ValueError`` for a name torch does not know or for CUDA on a machine without it.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available on this machine")
    return dev


def resolve_dtype(dtype) -> torch.dtype:
    """``torch.float32``/``torch.float64`` from a dtype or its name; anything else is a ``ValueError``."""
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return _DTYPES[dtype]


def dtype_name(dtype: torch.dtype) -> str:
    """``"float32"`` or ``"float64"``."""
    return "float64" if dtype == torch.float64 else "float32"
