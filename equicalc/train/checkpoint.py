"""Training checkpoints: everything needed to resume a run exactly, written atomically.

A checkpoint is a dict of tensors and plain Python values (read back with
``torch.load(weights_only=True)``)::

    {"format": "equicalc-checkpoint", "format_version": 1, "config": {...},
     "model": {"architecture", "config", "dtype", "state_dict"}, "ema_state_dict": {...} or None,
     "optimizer": {...}, "state": {"epoch", "step", ...}, "stats": {...}, "metrics": {...}}
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional, Union

import torch

from ..model_io import _model_dtype, build_model, save_model

__all__ = ["save_checkpoint", "load_checkpoint", "model_from_checkpoint", "deploy"]

FORMAT_NAME = "equicalc-checkpoint"
FORMAT_VERSION = 1


def atomic_torch_save(obj, path: Union[str, os.PathLike]) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _state(module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def save_checkpoint(path, model, ema_model, optimizer, state: dict, config: dict, stats: dict, metrics: dict) -> None:
    """Write a resumable checkpoint (atomically)."""
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": config,
        "model": {"architecture": model.architecture, "config": dict(model.config),
                  "dtype": _model_dtype(model), "state_dict": _state(model)},
        "ema_state_dict": _state(ema_model) if ema_model is not None else None,
        "optimizer": optimizer.state_dict(),
        "state": dict(state),
        "stats": stats,
        "metrics": metrics,
    }
    atomic_torch_save(payload, path)


def load_checkpoint(path: Union[str, os.PathLike]) -> dict:
    """Read and check a checkpoint written by ``save_checkpoint``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise ValueError(f"{path}: not an equicalc training checkpoint")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {payload['format_version']} is newer than this equicalc reads")
    return payload


def model_from_checkpoint(payload: dict, ema: bool = True):
    """The network stored in a checkpoint; the EMA weights when ``ema`` and present."""
    m = payload["model"]
    config = dict(m["config"])
    species = config.pop("species")
    model = build_model(m["architecture"], species=species, dtype=m["dtype"], **config)
    state = payload["ema_state_dict"] if ema and payload.get("ema_state_dict") is not None else m["state_dict"]
    model.load_state_dict(state, strict=True)
    return model


def deploy(checkpoint: Union[str, os.PathLike], model_path: Union[str, os.PathLike], ema: bool = True,
           metadata: Optional[dict] = None) -> None:
    """Turn a training checkpoint into a data-only ``model.pth`` (EMA weights by default)."""
    payload = load_checkpoint(checkpoint)
    model = model_from_checkpoint(payload, ema=ema)
    meta = {"training": {"epoch": payload["state"].get("epoch"), "stats": payload.get("stats"),
                         "validation": payload.get("metrics", {}).get("val"), "ema": bool(ema)}}
    meta.update(metadata or {})
    save_model(model, model_path, metadata=meta)
