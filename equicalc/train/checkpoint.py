"""Training checkpoints: everything needed to resume a run exactly, written atomically.

A checkpoint is a dict of tensors and plain Python values (read back with
``torch.load(weights_only=True)``)::

    {"format": "equicalc-checkpoint", "format_version": 1, "config": {...},
     "model": {"architecture", "config", "dtype", "state_dict"}, "ema_state_dict": {...} or None,
     "optimizer": {...}, "state": {"epoch", "step", ...}, "stats": {...}, "metrics": {...}}

Its ``model`` record is the one a model file holds (``equicalc.model_io.model_record``),
and ``equicalc.load_model`` reads checkpoints with the same checks as model files.
"""
from __future__ import annotations

import os
from typing import Optional, Union

from ..files import atomic_torch_save
from ..model_io import (CHECKPOINT_FORMAT_NAME, CHECKPOINT_FORMAT_VERSION, load_model, model_record, read_checked_file,
                        save_model)

__all__ = ["save_checkpoint", "load_checkpoint", "deploy"]


def save_checkpoint(path, model, ema_model, optimizer, state: dict, config: dict, stats: dict, metrics: dict) -> None:
    """Write a resumable checkpoint (atomically)."""
    from .. import __version__

    payload = {
        "format": CHECKPOINT_FORMAT_NAME,
        "equicalc_version": __version__,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "config": config,
        "model": model_record(model),
        "ema_state_dict": model_record(ema_model)["state_dict"] if ema_model is not None else None,
        "optimizer": optimizer.state_dict(),
        "state": dict(state),
        "stats": stats,
        "metrics": metrics,
    }
    atomic_torch_save(payload, path)


def load_checkpoint(path: Union[str, os.PathLike]) -> dict:
    """Read and check a checkpoint written by ``save_checkpoint`` (its dictionary; no model is built)."""
    return read_checked_file(path, CHECKPOINT_FORMAT_NAME, CHECKPOINT_FORMAT_VERSION, "checkpoint")


def deploy(checkpoint: Union[str, os.PathLike], model_path: Union[str, os.PathLike], ema: bool = True,
           metadata: Optional[dict] = None) -> None:
    """Turn a training checkpoint into a data-only ``model.pth`` (EMA weights by default)."""
    load_checkpoint(checkpoint)  # a model file given by mistake is refused here
    model = load_model(checkpoint, ema=ema)
    meta = dict(model.metadata)
    meta.update(metadata or {})
    save_model(model, model_path, metadata=meta)
