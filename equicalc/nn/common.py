"""Pieces every architecture shares: species bookkeeping and per-species scale/shift."""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import torch
from ase.data import atomic_numbers, chemical_symbols
from torch import nn

from .zbl import ZBLRepulsion

__all__ = ["EnergyModel", "SpeciesScaleShift", "normalize_species", "per_species_values"]


def normalize_species(species: Sequence[Union[str, int]]) -> list:
    """Chemical symbols from symbols or atomic numbers, checked, in the given order."""
    if species is None or len(species) == 0:
        raise ValueError("species must list at least one element, e.g. ['Cu', 'Zr']")
    out = []
    for s in species:
        if isinstance(s, (int,)) and not isinstance(s, bool):
            if not 0 < s < len(chemical_symbols):
                raise ValueError(f"species: {s} is not an atomic number")
            s = chemical_symbols[s]
        if s not in atomic_numbers or s == "X":
            raise ValueError(f"species: {s!r} is not a chemical symbol")
        out.append(s)
    if len(set(out)) != len(out):
        raise ValueError(f"species: duplicate entries in {list(species)}")
    return out


def per_species_values(values, species: list, default: float, name: str) -> list:
    """A per-species list from ``None``, a number, a list or a ``{symbol: value}`` dict."""
    if values is None:
        return [float(default)] * len(species)
    if isinstance(values, (int, float)):
        return [float(values)] * len(species)
    if isinstance(values, dict):
        unknown = set(values) - set(species)
        if unknown:
            raise ValueError(f"{name}: species {sorted(unknown)} are not in the model's species {species}")
        return [float(values.get(s, default)) for s in species]
    values = [float(v) for v in values]
    if len(values) != len(species):
        raise ValueError(f"{name}: expected {len(species)} values (one per species {species}), got {len(values)}")
    return values


class SpeciesScaleShift(nn.Module):
    """Per-atom energy ``E_i = scale[s_i] * e_i + shift[s_i]`` (eV).

    Also maps atomic numbers to the model's type indices (-1 for unknown).
    """

    def __init__(self, species: list, scales: Optional[Sequence[float]] = None, shifts: Optional[Sequence[float]] = None):
        super().__init__()
        self.species = list(species)
        table = torch.full((len(chemical_symbols),), -1, dtype=torch.long)
        for t, s in enumerate(self.species):
            table[atomic_numbers[s]] = t
        self.register_buffer("type_of_number", table, persistent=False)
        n = len(self.species)
        self.scales = nn.Parameter(torch.tensor(scales if scales is not None else [1.0] * n, dtype=torch.get_default_dtype()))
        self.shifts = nn.Parameter(torch.tensor(shifts if shifts is not None else [0.0] * n, dtype=torch.get_default_dtype()))

    def types(self, numbers: torch.Tensor) -> torch.Tensor:
        """Type index (0..S-1) of every atom from its atomic number."""
        return self.type_of_number[numbers]

    def forward(self, energies: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        return self.scales[types] * energies + self.shifts[types]

    @torch.no_grad()
    def set(self, scales: Optional[Dict[str, float]] = None, shifts: Optional[Dict[str, float]] = None) -> None:
        """Set per-species scales and/or shifts (eV) from dicts, lists or numbers."""
        for name, values in (("scales", scales), ("shifts", shifts)):
            if values is None:
                continue
            param = getattr(self, name)
            if isinstance(values, dict):  # species not named keep their current value
                current = dict(zip(self.species, param.tolist()))
                per_species_values(values, self.species, 0.0, name)  # checks the names
                current.update({k: float(v) for k, v in values.items()})
                values = [current[s] for s in self.species]
            param.copy_(torch.tensor(per_species_values(values, self.species, 0.0, name), dtype=torch.float64).to(param.dtype))


class EnergyModel(nn.Module):
    """What every architecture shares: its spec, species, cutoff and per-species energy scale and shift.

    Subclasses set ``spec_class`` and map ``(numbers, edge_index, edge_vectors, edge_pair)`` to
    per-atom energies (eV): ``numbers`` (N,) atomic numbers, ``edge_index`` (2, E) centre ``i`` and
    neighbour ``j`` of each edge (|r_ij| < r_max), ``edge_vectors`` (E, 3) ``r_ij`` in Å in the
    model's dtype, and ``edge_pair`` an optional (E,) unordered-pair id of each edge
    (``equicalc.neighbors.edge_pair_index``), used by models whose ``uses_edge_pairs`` is True.
    """

    spec_class: type = None
    uses_edge_pairs = False

    def __init__(self, spec):
        super().__init__()
        if not isinstance(spec, self.spec_class):
            raise TypeError(f"{type(self).__name__} needs a {self.spec_class.__name__}, got {type(spec).__name__}")
        self.spec = spec
        self.species = list(spec.species)
        self.r_max = spec.r_max
        self.scale_shift = SpeciesScaleShift(self.species)
        self.repulsion = ZBLRepulsion(self.species, spec.zbl_inner, spec.zbl_outer) if spec.zbl else None

    def with_repulsion(self, energies: torch.Tensor, types: torch.Tensor, edge_index: torch.Tensor,
                       lengths: torch.Tensor) -> torch.Tensor:
        """``energies`` (N,) plus each atom's share of the ZBL pair repulsion when the spec asks for it."""
        if self.repulsion is None:
            return energies
        return energies + self.repulsion(types, edge_index, lengths)

    @property
    def architecture(self) -> str:
        return self.spec.architecture

    @property
    def config(self) -> dict:
        """The spec as plain values (what model files store)."""
        return self.spec.to_dict()
