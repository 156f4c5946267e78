"""Ziegler–Biersack–Littmark screened nuclear repulsion, switched off smoothly inside the bonding range.

    E_ij(r) = (Z_i Z_j e² / 4πε0 r) φ(r / a) S(r),    a = 0.46850 Å / (Z_i^0.23 + Z_j^0.23)
    φ(x) = 0.18175 e^(-3.19980 x) + 0.50986 e^(-0.94229 x) + 0.28022 e^(-0.40290 x) + 0.02817 e^(-0.20162 x)

with e²/4πε0 = 14.399645 eV Å. The switch ``S`` is 1 below ``r_in`` and 0 above
``r_out``, with ``S = 1 - 10 u³ + 15 u⁴ - 6 u⁵`` in between
(``u = (r - r_in) / (r_out - r_in)``), so value, first and second derivative are
continuous. ``r_in`` and ``r_out`` are fractions (``inner``, ``outer``) of the
sum of the two atoms' covalent radii (ASE's table): with the defaults 0.35 and
0.6, a Cu–Cu pair feels the full wall below 0.92 Å and none of it above 1.58 Å,
Zr–Zr below 1.23 and above 2.10 Å — well inside the bonding range, where
reference data rarely go and a network alone would have no reason to repel.
Each pair's energy goes half to each atom.
"""
from __future__ import annotations

import torch
from ase.data import atomic_numbers, covalent_radii
from torch import nn

__all__ = ["ZBLRepulsion", "zbl_energy", "switch", "zbl_reach"]

_KE = 14.399645  # e^2 / (4 pi eps0), eV Å
_COEFFS = (0.18175, 0.50986, 0.28022, 0.02817)
_EXPONENTS = (3.19980, 0.94229, 0.40290, 0.20162)


def zbl_reach(species, outer: float) -> float:
    """The largest distance (Å) at which any pair of ``species`` still feels the switched ZBL term."""
    radii = [covalent_radii[atomic_numbers[s]] for s in species]
    return outer * 2 * max(radii)


def zbl_energy(r: torch.Tensor, zi: torch.Tensor, zj: torch.Tensor) -> torch.Tensor:
    """Unswitched ZBL pair energy (eV) at distances ``r`` (Å) for nuclear charges ``zi``, ``zj``."""
    a = 0.46850 / (zi.pow(0.23) + zj.pow(0.23))
    x = r / a
    phi = sum(c * torch.exp(-e * x) for c, e in zip(_COEFFS, _EXPONENTS))
    return _KE * zi * zj / r * phi


def switch(r: torch.Tensor, r_in: torch.Tensor, r_out: torch.Tensor) -> torch.Tensor:
    """1 below ``r_in``, 0 above ``r_out``, a quintic smoothstep (C2) in between."""
    u = ((r - r_in) / (r_out - r_in)).clamp(0.0, 1.0)
    return 1.0 - u ** 3 * (10.0 - 15.0 * u + 6.0 * u ** 2)


class ZBLRepulsion(nn.Module):
    """Per-atom ZBL energies (eV) from the model's edges; constants per species pair, no weights."""

    def __init__(self, species, inner: float = 0.35, outer: float = 0.6):
        super().__init__()
        if not 0 < inner < outer:
            raise ValueError(f"ZBL switch: need 0 < inner < outer, got {inner} and {outer}")
        z = torch.tensor([float(atomic_numbers[s]) for s in species], dtype=torch.float64)
        radii = torch.tensor([covalent_radii[atomic_numbers[s]] for s in species], dtype=torch.float64)
        pair = radii[:, None] + radii[None, :]
        self.register_buffer("z", z, persistent=False)
        self.register_buffer("r_in", inner * pair, persistent=False)
        self.register_buffer("r_out", outer * pair, persistent=False)

    def forward(self, types: torch.Tensor, edge_index: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(N,) energies of the atoms whose ``types`` are given, from edge ``lengths`` (Å, every pair both ways)."""
        ti, tj = types[edge_index[0]], types[edge_index[1]]
        close = lengths < self.r_out[ti, tj].to(lengths.dtype)
        r = lengths[close]
        ti, tj = ti[close], tj[close]
        dt = lengths.dtype
        e = zbl_energy(r, self.z[ti].to(dt), self.z[tj].to(dt)) * switch(r, self.r_in[ti, tj].to(dt),
                                                                         self.r_out[ti, tj].to(dt))
        out = torch.zeros(types.shape[0], dtype=dt, device=lengths.device)
        return out.index_add(0, edge_index[0][close], 0.5 * e)
