"""The ``model.pth`` file: data only (config, weights, metadata, format version).

Layout of the dictionary saved with ``torch.save``::

    {"format": "equicalc-model", "format_version": 1, "equicalc_version": "...",
     "architecture": "nequip", "config": {...the spec: species and hyperparameters...},
     "dtype": "float32", "state_dict": {name: tensor}, "metadata": {...}}

Training checkpoints hold the same record (architecture, config, dtype,
state_dict) under ``"model"``; ``load_model`` reads both kinds of file through
one path with the same checks. It reads them with ``torch.load(weights_only=True)``: loading never runs
code from the file. Writes go to a temporary file that is then renamed, so an
interrupted save never leaves a truncated model behind.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import torch

from .device import dtype_name, resolve_dtype
from .files import atomic_torch_save
from .nn.allegro import Allegro
from .nn.nequip import NequIP
from .nn.specs import ModelSpec, spec_from_dict

__all__ = ["build_model", "save_model", "load_model", "model_from_payload", "model_record", "FORMAT_VERSION",
           "ARCHITECTURES"]

FORMAT_NAME = "equicalc-model"
FORMAT_VERSION = 2  # 2: the spec has the ZBL fields (a version-1 file's model has no ZBL term)
CHECKPOINT_FORMAT_NAME = "equicalc-checkpoint"
CHECKPOINT_FORMAT_VERSION = 2
ARCHITECTURES = {"nequip": NequIP, "allegro": Allegro}


def build_model(architecture="nequip", species=("Cu", "Zr"), dtype="float32", seed: Optional[int] = None,
                scales=None, shifts=None, **hyperparameters):
    """A freshly initialised network (random weights).

    Args:
        architecture: ``"nequip"`` (message passing), ``"allegro"`` (strictly local),
            or a spec (``NequIPSpec``/``AllegroSpec``) that holds species and hyperparameters.
        species: chemical symbols the model knows, e.g. ``["Cu", "Zr"]``.
        dtype: ``"float32"`` (default) or ``"float64"``.
        seed: seed for the weight initialisation (reproducible models).
        scales, shifts: per-species energy scale and shift, eV (dict, list or number).
        **hyperparameters: fields of the architecture's spec, e.g. ``r_max`` (Å),
            ``l_max``, ``num_layers``, ``num_features``; see ``equicalc.nn.NequIPSpec``
            and ``equicalc.nn.AllegroSpec`` for all of them with units and defaults.
    """
    if isinstance(architecture, ModelSpec):
        if hyperparameters:
            raise ValueError(f"build_model: give hyperparameters in the spec, not as {sorted(hyperparameters)}")
        spec = architecture
    else:
        spec = spec_from_dict(architecture, {"species": species, **hyperparameters})
    dt = resolve_dtype(dtype)
    if seed is not None:
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
    # built in float64, so that every constant (Wigner 3j, normalisations) is exact
    # before the conversion to the requested precision
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = ARCHITECTURES[spec.architecture](spec)
    finally:
        torch.set_default_dtype(default_dtype)
        if seed is not None:
            torch.random.set_rng_state(state)
    model = model.to(dt)
    # set after the conversion so that float64 models hold the given values exactly
    model.scale_shift.set(scales=scales, shifts=shifts)
    return model


def model_record(model) -> dict:
    """What defines ``model``: ``architecture``, ``config`` (its spec), ``dtype`` and ``state_dict`` (CPU copies).

    Model files and training checkpoints store this same record.
    """
    if not isinstance(getattr(model, "spec", None), ModelSpec):
        raise ValueError("not an equicalc model (it has no spec)")
    return {"architecture": model.spec.architecture, "config": model.spec.to_dict(),
            "dtype": dtype_name(next(model.parameters()).dtype),
            "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}


def save_model(model, path: Union[str, os.PathLike], metadata: Optional[dict] = None) -> None:
    """Write ``model`` to ``path`` as a data-only model file (atomically).

    ``metadata`` is any JSON-like dict stored alongside (e.g. training metrics).
    """
    try:
        record = model_record(model)
    except ValueError as exc:
        raise ValueError(f"save_model: {exc}") from None
    from . import __version__

    meta = {"species": list(model.species), "r_max": float(model.r_max), "units": {"energy": "eV", "length": "Å"}}
    meta.update(metadata or {})
    payload = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "equicalc_version": __version__,
               **record, "metadata": meta}
    atomic_torch_save(payload, path)


def _load_dict(path: Union[str, os.PathLike], what: str) -> dict:
    """``torch.load(weights_only=True)`` of a file that must hold a dictionary; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable equicalc {what} ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: not an equicalc {what} (it holds a {type(payload).__name__}, not a dictionary)")
    return payload


def read_checked_file(path: Union[str, os.PathLike], format_name: str, supported_version: int, what: str) -> dict:
    """A data-only dictionary written by ``torch.save``, checked for its format name and version.

    ``what`` names the kind of file in error messages ("model file", "checkpoint").
    """
    payload = _load_dict(path, what)
    if payload.get("format") != format_name:
        raise ValueError(f"{path}: not an equicalc {what} (no '{format_name}' header)")
    return check_format(payload, path, supported_version, what)


def check_format(payload: dict, path, supported_version: int, what: str) -> dict:
    """``payload`` if its format version is one this equicalc reads, else ``ValueError``."""
    version = payload.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{path}: {what} has no valid format version (a positive integer), got {version!r}")
    if version > supported_version:
        raise ValueError(
            f"{path}: {what} format version {version} is newer than this equicalc supports "
            f"({supported_version}); upgrade equicalc (file written by equicalc {payload.get('equicalc_version')})"
        )
    return payload


def model_from_payload(payload: dict, where, ema: bool = True):
    """The network in a checked model-file or checkpoint dictionary (``read_checked_file``).

    For a checkpoint, ``ema`` picks the moving-average weights when it has them.
    The model's ``metadata`` is the file's (a checkpoint's: its epoch, statistics
    and validation metrics). Errors name ``where`` (the file).
    """
    if payload.get("format") == CHECKPOINT_FORMAT_NAME:
        record = payload.get("model")
        if not isinstance(record, dict):
            raise ValueError(f"{where}: checkpoint is missing its 'model' record")
        use_ema = ema and payload.get("ema_state_dict") is not None
        state = payload["ema_state_dict"] if use_ema else record.get("state_dict")
        state_info = payload.get("state") if isinstance(payload.get("state"), dict) else {}
        metadata = {"training": {"epoch": state_info.get("epoch"), "stats": payload.get("stats"),
                                 "validation": (payload.get("metrics") or {}).get("val"), "ema": use_ema}}
    else:
        record, state = payload, payload.get("state_dict")
        metadata = payload.get("metadata") if isinstance(payload.get("metadata"), dict) else {}
    for key in ("architecture", "config", "dtype", "state_dict"):
        if key not in record:
            raise ValueError(f"{where}: model record is missing '{key}'")
    arch, config = record["architecture"], record["config"]
    if arch not in ARCHITECTURES:
        raise ValueError(f"{where}: unknown architecture {arch!r} (known: {sorted(ARCHITECTURES)})")
    if not isinstance(config, dict) or not isinstance(state, dict):
        raise ValueError(f"{where}: the model's config and weights must be mappings")
    if payload.get("format_version") == 1:  # written before the ZBL term existed: those models have none
        config = {"zbl": False, **config}
    if arch == "allegro":  # written before the option existed: products of equal irreps only
        config = {"full_products": False, **config}
    try:
        spec = spec_from_dict(arch, config)
        check_weights(spec, state)
        model = build_model(spec, dtype=record["dtype"])
    except ValueError as exc:
        raise ValueError(f"{where}: invalid model: {exc}") from None
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"{where}: weights do not match the stored configuration ({exc})") from None
    model.metadata = dict(metadata)
    return model


def check_weights(spec: ModelSpec, state: dict) -> None:
    """``ValueError`` unless ``state`` has the weights ``spec`` implies (checked before the model is built, so a
    configuration much larger than its weights allocates nothing) and all of them are finite."""
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"weight {key!r} is not a tensor")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ValueError(f"weight {key!r} holds NaN or infinite values")
    for key, shape in ARCHITECTURES[spec.architecture].weight_shapes(spec).items():
        if key not in state:
            raise ValueError(f"weights do not match the configuration: {key!r} is missing")
        got = tuple(state[key].shape)
        if len(got) != len(shape) or any(want is not None and want != n for want, n in zip(shape, got)):
            raise ValueError(f"weights do not match the configuration: {key!r} has shape {got}, the configuration "
                             f"implies {tuple('*' if n is None else n for n in shape)}")
    layers = {int(k.split(".")[1]) for k in state if k.startswith("layers.")}
    if layers != set(range(spec.num_layers)):
        raise ValueError(f"weights do not match the configuration: {len(layers)} layers, the configuration says "
                         f"{spec.num_layers}")


def read_payload(path: Union[str, os.PathLike]) -> dict:
    """The checked dictionary of a model file or a training checkpoint (no model is built)."""
    payload = _load_dict(path, "model file")
    if payload.get("format") == CHECKPOINT_FORMAT_NAME:
        return check_format(payload, path, CHECKPOINT_FORMAT_VERSION, "checkpoint")
    if payload.get("format") == FORMAT_NAME:
        return check_format(payload, path, FORMAT_VERSION, "model file")
    raise ValueError(f"{path}: not an equicalc model file or checkpoint (no '{FORMAT_NAME}' header)")


def load_model(path: Union[str, os.PathLike], device="cpu", dtype=None, ema: bool = True):
    """The model in a file written by ``save_model`` or in a training checkpoint.

    Args:
        path: model file (``model.pth``) or checkpoint (``checkpoint_best.pt``...).
        device: torch device for the model.
        dtype: ``None`` keeps the stored precision; ``"float32"``/``"float64"`` converts.
        ema: for a checkpoint, its moving-average weights (default) or the raw ones.
    """
    model = model_from_payload(read_payload(path), path, ema=ema)
    if dtype is not None:
        model = model.to(resolve_dtype(dtype))
    return model.to(device)
