"""The ``model.pth`` file: data only (config, weights, metadata, format version).

Layout of the dictionary saved with ``torch.save``::

    {"format": "equicalc-model", "format_version": 1, "equicalc_version": "...",
     "architecture": "nequip", "config": {...build_model keyword arguments...},
     "dtype": "float32", "state_dict": {name: tensor}, "metadata": {...}}

``load_model`` reads it with ``torch.load(weights_only=True)``: loading never runs
code from the file. Writes go to a temporary file that is then renamed, so an
interrupted save never leaves a truncated model behind.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional, Union

import torch

from .nn.allegro import Allegro
from .nn.nequip import NequIP

__all__ = ["build_model", "save_model", "load_model", "FORMAT_VERSION", "ARCHITECTURES"]

FORMAT_NAME = "equicalc-model"
FORMAT_VERSION = 1
ARCHITECTURES = {"nequip": NequIP, "allegro": Allegro}
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return _DTYPES[dtype]


def build_model(architecture: str = "nequip", species=("Cu", "Zr"), dtype="float32", seed: Optional[int] = None, **kwargs):
    """A freshly initialised network (random weights).

    Args:
        architecture: ``"nequip"`` (message passing) or ``"allegro"`` (strictly local).
        species: chemical symbols the model knows, e.g. ``["Cu", "Zr"]``.
        dtype: ``"float32"`` (default) or ``"float64"``.
        seed: seed for the weight initialisation (reproducible models).
        **kwargs: hyperparameters of the architecture, e.g. ``r_max`` (Å),
            ``l_max``, ``parity``, ``num_layers``, ``num_features``,
            ``num_basis``, ``radial_hidden``, ``radial_layers``,
            ``avg_num_neighbors``, ``scales`` and ``shifts`` (eV per species).
            See ``equicalc.nn.NequIP`` and ``equicalc.nn.Allegro`` for all of them.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {sorted(ARCHITECTURES)}")
    cls = ARCHITECTURES[architecture]
    dt = _dtype(dtype)
    if seed is not None:
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
    # built in float64, so that every constant (Wigner 3j, normalisations) is exact
    # before the conversion to the requested precision
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = cls(species=list(species), **kwargs)
    except TypeError as exc:
        raise ValueError(f"build_model({architecture!r}): {exc}") from None
    finally:
        torch.set_default_dtype(default_dtype)
        if seed is not None:
            torch.random.set_rng_state(state)
    model = model.to(dt)
    # set after the conversion so that float64 models hold the given values exactly
    model.scale_shift.set(scales=kwargs.get("scales"), shifts=kwargs.get("shifts"))
    return model


def _model_dtype(model) -> str:
    dt = next(model.parameters()).dtype
    return "float64" if dt == torch.float64 else "float32"


def save_model(model, path: Union[str, os.PathLike], metadata: Optional[dict] = None) -> None:
    """Write ``model`` to ``path`` as a data-only model file (atomically).

    ``metadata`` is any JSON-like dict stored alongside (e.g. training metrics).
    """
    arch = getattr(model, "architecture", None)
    if arch not in ARCHITECTURES:
        raise ValueError("save_model: not an equicalc model (no known 'architecture' attribute)")
    from . import __version__

    meta = {"species": list(model.species), "r_max": float(model.r_max), "units": {"energy": "eV", "length": "Å"}}
    meta.update(metadata or {})
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "equicalc_version": __version__,
        "architecture": arch,
        "config": dict(model.config),
        "dtype": _model_dtype(model),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "metadata": meta,
    }
    atomic_torch_save(payload, path)


def atomic_torch_save(obj, path: Union[str, os.PathLike]) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make the file private
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read_checked_file(path: Union[str, os.PathLike], format_name: str, supported_version: int, what: str) -> dict:
    """A data-only dictionary written by ``torch.save``, checked for its format name and version.

    ``what`` names the kind of file in error messages ("model file", "checkpoint").
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable equicalc {what} ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != format_name:
        raise ValueError(f"{path}: not an equicalc {what} (no '{format_name}' header)")
    version = payload.get("format_version")
    if not isinstance(version, int):
        raise ValueError(f"{path}: {what} has no valid format version")
    if version > supported_version:
        raise ValueError(
            f"{path}: {what} format version {version} is newer than this equicalc supports "
            f"({supported_version}); upgrade equicalc (file written by equicalc {payload.get('equicalc_version')})"
        )
    return payload


def read_model_file(path: Union[str, os.PathLike]) -> dict:
    """The checked dictionary stored in a model file (no model is built)."""
    payload = read_checked_file(path, FORMAT_NAME, FORMAT_VERSION, "model file")
    for key in ("architecture", "config", "state_dict", "dtype"):
        if key not in payload:
            raise ValueError(f"{path}: model file is missing '{key}'")
    return payload


def load_model(path: Union[str, os.PathLike], device="cpu", dtype=None):
    """Rebuild a model from a file written by ``save_model``.

    Args:
        path: model file.
        device: torch device for the model.
        dtype: ``None`` keeps the stored precision; ``"float32"``/``"float64"`` converts.
    """
    payload = read_model_file(path)
    arch = payload["architecture"]
    if arch not in ARCHITECTURES:
        raise ValueError(f"{path}: unknown architecture {arch!r} (known: {sorted(ARCHITECTURES)})")
    config = dict(payload["config"])
    species = config.pop("species")
    model = build_model(arch, species=species, dtype=payload["dtype"], **config)
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not match the stored configuration ({exc})") from None
    model.metadata = dict(payload.get("metadata", {}))
    if dtype is not None:
        model = model.to(_dtype(dtype))
    return model.to(device)
