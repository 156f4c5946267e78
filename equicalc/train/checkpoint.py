"""Training checkpoints: everything needed to resume a run exactly, written atomically.

A checkpoint is a dict of tensors and plain Python values (read back with
``torch.load(weights_only=True)``)::

    {"format": "equicalc-checkpoint", "format_version": 1, "config": {...},
     "model": {"architecture", "config", "dtype", "state_dict"}, "ema_state_dict": {...} or None,
     "optimizer": {...}, "state": {"epoch", "step", ...}, "stats": {...}, "metrics": {...}}
"""
from __future__ import annotations

import os
from typing import Optional, Union

from ..model_io import _model_dtype, atomic_torch_save, build_model, read_checked_file, save_model

__all__ = ["save_checkpoint", "load_checkpoint", "model_from_checkpoint", "deploy"]

FORMAT_NAME = "equicalc-checkpoint"
FORMAT_VERSION = 1


def _state(module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def save_checkpoint(path, model, ema_model, optimizer, state: dict, config: dict, stats: dict, metrics: dict) -> None:
    """Write a resumable checkpoint (atomically)."""
    from .. import __version__

    payload = {
        "format": FORMAT_NAME,
        "equicalc_version": __version__,
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
    return read_checked_file(path, FORMAT_NAME, FORMAT_VERSION, "checkpoint")


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
