"""Models that ship inside the package, addressed by name: ``EquiCalc("cuzr")``.

    from equicalc.models import model_path, shipped_models, describe
    EquiCalc("cuzr")                 # the default Cu–Zr model
    equicalc models                  # the command line lists them with their errors

The files are package data (installed with the wheel); ``data/cuzr/`` holds the
data, configs and training runs that made them, and ``data/cuzr/ship.py`` writes
them here with their measured test errors in the metadata.
"""
from __future__ import annotations

import importlib.resources
import os
from pathlib import Path
from typing import Dict, Union

__all__ = ["SHIPPED", "shipped_file", "model_path", "shipped_models", "describe", "random_model"]

# name -> (file in this folder, one line on what it is)
SHIPPED: Dict[str, tuple] = {
    "cuzr": ("cuzr_nequip.pth", "Cu–Zr NequIP fitted to the Mendelev EAM (the default Cu–Zr model)"),
    "cuzr-allegro": ("cuzr_allegro.pth", "Cu–Zr Allegro fitted to the Mendelev EAM"),
}


def shipped_models() -> list:
    """Names of the shipped models."""
    return list(SHIPPED)


def shipped_file(name: str) -> Path:
    """Where the shipped model ``name`` lives in the installed package (whether or not the file is there)."""
    if name not in SHIPPED:
        raise ValueError(f"no shipped model {name!r}; shipped: {', '.join(SHIPPED)}")
    return Path(str(importlib.resources.files(__name__) / SHIPPED[name][0]))


def model_path(model: Union[str, os.PathLike]) -> Path:
    """The file of ``model``: an existing path as it is, or the file of a shipped model's name.

    Raises ``FileNotFoundError`` that names the shipped models when it is neither.
    """
    path = Path(os.fsdecode(model))
    if path.is_file():
        return path
    name = os.fsdecode(model)
    if name in SHIPPED:
        shipped = shipped_file(name)
        if not shipped.is_file():
            raise FileNotFoundError(f"the shipped model {name!r} is missing from this installation ({shipped}); "
                                    "reinstall equicalc")
        return shipped
    raise FileNotFoundError(f"model file not found: {path}; give a model file or a shipped model's name "
                            f"({', '.join(SHIPPED)}; `equicalc models` lists them)")


def describe(name: str) -> dict:
    """What a shipped model is: architecture, species, cutoff (Å), dtype, parameters and its test errors."""
    from ..model_io import load_model

    model = load_model(model_path(name))
    meta = model.metadata
    return {"name": name, "description": SHIPPED[name][1], "architecture": model.spec.architecture,
            "species": list(model.species), "r_max": model.r_max,
            "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
            "parameters": sum(p.numel() for p in model.parameters()), "test_errors": meta.get("test_errors", {})}


def random_model(species=("Cu", "Zr"), seed: int = 0):
    """A freshly initialised NequIP of the shipped model's size (random weights): for trying commands and
    timing them, not a potential. Only ever used when asked for (``--model random``)."""
    from ..model_io import build_model

    return build_model("nequip", species=list(species), r_max=5.0, l_max=1, num_layers=3, num_features=32,
                       avg_num_neighbors=32.0, seed=seed)
