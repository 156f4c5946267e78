"""One typed spec per architecture: every hyperparameter once, with its type, default, unit and rules.

A spec is what defines a network apart from its weights. ``build_model``, the
model file (its ``config``), training checkpoints and the ``model:`` section of
a training config all go through it, so a hyperparameter is named, documented
and checked in one place::

    spec = NequIPSpec(species=("Cu", "Zr"), r_max=5.0, num_layers=3)
    spec = spec_from_dict("nequip", {"species": ["Cu", "Zr"], "r_max": 5.0})   # checked, did-you-mean errors
    spec.to_dict()                                                               # what model files store
"""
from __future__ import annotations

import typing
from dataclasses import MISSING, asdict, dataclass, fields
from typing import ClassVar, Dict, Tuple

from ..checks import check_value, checked_fields, option
from .common import normalize_species
from .zbl import zbl_reach

__all__ = ["ModelSpec", "NequIPSpec", "AllegroSpec", "SPECS", "spec_from_dict"]


@dataclass(frozen=True)
class ModelSpec:
    """Hyperparameters every architecture has."""

    species: Tuple[str, ...] = option(MISSING, "chemical symbols (or atomic numbers) the model knows, in type order")
    r_max: float = option(5.0, "cutoff radius, Å", minimum=0, exclusive=True, maximum=20.0)
    l_max: int = option(1, "highest rotation order of the equivariant features", minimum=0, maximum=6)
    parity: bool = option(True, "O(3) features with both parities (true) or SO(3) only (false)")
    num_layers: int = option(3, "number of interaction layers", minimum=1, maximum=16)
    num_basis: int = option(8, "number of Bessel radial basis functions", minimum=1, maximum=64)
    avg_num_neighbors: float = option(30.0, "mean neighbour count within r_max (message normalisation); "
                                            "training sets it from the data", minimum=0, exclusive=True)
    poly_p: int = option(6, "exponent p of the polynomial cutoff envelope", minimum=1, maximum=32)
    zbl: bool = option(True, "add the ZBL screened nuclear repulsion, switched off inside the bonding range "
                             "(equicalc.nn.zbl); models saved before it existed have none")
    zbl_inner: float = option(0.35, "ZBL acts fully below this fraction of the pair's covalent-radius sum",
                              minimum=0, exclusive=True)
    zbl_outer: float = option(0.6, "ZBL is zero above this fraction of the pair's covalent-radius sum",
                              minimum=0, exclusive=True, maximum=1.0)

    architecture: ClassVar[str] = ""

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            if f.name == "species":
                continue
            value = check_value(getattr(self, f.name), hints[f.name], f.name, dict(f.metadata), what=self.architecture)
            object.__setattr__(self, f.name, value)
        object.__setattr__(self, "species", tuple(normalize_species(self.species)))
        if self.zbl and not self.zbl_inner < self.zbl_outer:
            raise ValueError(f"{self.architecture}: zbl_inner ({self.zbl_inner}) must be below zbl_outer "
                             f"({self.zbl_outer})")
        if self.zbl and zbl_reach(self.species, self.zbl_outer) >= self.r_max:
            raise ValueError(f"{self.architecture}: the ZBL term reaches {zbl_reach(self.species, self.zbl_outer):.2f} "
                             f"Å, beyond r_max ({self.r_max} Å); lower zbl_outer or raise r_max")

    def to_dict(self) -> dict:
        """Plain values (species as a list), as model files and checkpoints store them."""
        d = asdict(self)
        d["species"] = list(self.species)
        return d

    def hyperparameters(self) -> dict:
        """``to_dict()`` without the species."""
        d = self.to_dict()
        d.pop("species")
        return d


@dataclass(frozen=True)
class NequIPSpec(ModelSpec):
    """NequIP (message passing): ``num_layers`` interaction blocks of ``num_features`` channels per irrep."""

    num_features: int = option(32, "channels per irrep of the hidden features", minimum=1, maximum=1024)
    radial_hidden: int = option(64, "width of the hidden layers of the radial MLP", minimum=1, maximum=4096)
    radial_layers: int = option(2, "hidden layers of the radial MLP", minimum=0, maximum=8)
    readout_hidden: int = option(16, "width of the scalar readout's hidden layer", minimum=1, maximum=4096)
    resnet: bool = option(True, "residual updates between blocks of equal shape")

    architecture: ClassVar[str] = "nequip"


@dataclass(frozen=True)
class AllegroSpec(ModelSpec):
    """Allegro (strictly local): a scalar and a tensor track on every pair within ``r_max``."""

    num_layers: int = option(2, "number of tensor-product layers (body order grows with it)", minimum=1, maximum=16)
    num_scalar_features: int = option(64, "width of the scalar track", minimum=1, maximum=4096)
    num_tensor_features: int = option(16, "channels per irrep of the tensor track", minimum=1, maximum=1024)
    mlp_hidden: int = option(64, "width of the hidden layers of the two-body, latent and readout MLPs", minimum=1,
                             maximum=4096)
    mlp_layers: int = option(2, "hidden layers of the two-body and latent MLPs", minimum=0, maximum=8)
    full_products: bool = option(True, "tensor products of every irrep of the tensor track with every irrep of "
                                 "the environment that gives an irrep of the track (0e x 1o -> 1o, 1o x 1o -> 0e, "
                                 "...); false: only products of equal irreps, which leave the track's l > 0 part "
                                 "empty after the first layer (how model files without this option were built)")

    architecture: ClassVar[str] = "allegro"


SPECS: Dict[str, type] = {"nequip": NequIPSpec, "allegro": AllegroSpec}


def spec_from_dict(architecture: str, raw: dict, where: str = "") -> ModelSpec:
    """A checked spec from plain values: unknown keys, wrong types and impossible values are ``ValueError``."""
    if architecture not in SPECS:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {', '.join(SPECS)}")
    cls = SPECS[architecture]
    values = checked_fields(cls, {k: v for k, v in raw.items() if k != "species"}, where, architecture,
                            skip=("species",))
    if "species" not in raw:
        raise ValueError(f"{architecture}: '{where}species' is required (e.g. ['Cu', 'Zr'])")
    return cls(species=raw["species"], **values)
