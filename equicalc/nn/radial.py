"""Radial basis and smooth cutoff envelope shared by the architectures.

Bessel basis ``B_n(r) = sin(n pi u) / u`` with ``u = r / r_c`` (n = 1..N) times
the polynomial envelope ``f_p(u)``. This is NequIP's ``(2 / r_c) sin(n pi r / r_c) / r``
times ``r_c^2 / 2``: dimensionless and of order one at typical neighbour
distances (NequIP's form is about 0.05 there, which leaves the radial networks
a signal some ten times weaker than the species terms and slows training
several-fold). The envelope, with ``u = r / r_c``:

    f_p(u) = 1 - (p+1)(p+2)/2 u^p + p(p+2) u^(p+1) - p(p+1)/2 u^(p+2),  u < 1
    f_p(u) = 0,                                                         u >= 1

so that f, f' and f'' vanish at r_c: energies and forces stay continuous when an
atom crosses the cutoff.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["BesselBasis", "polynomial_envelope", "RadialEmbedding"]


def polynomial_envelope(u: torch.Tensor, p: int = 6) -> torch.Tensor:
    """Smooth cutoff envelope of the reduced distance ``u = r / r_c`` (dimensionless)."""
    env = (
        1.0
        - 0.5 * (p + 1) * (p + 2) * u.pow(p)
        + p * (p + 2) * u.pow(p + 1)
        - 0.5 * p * (p + 1) * u.pow(p + 2)
    )
    return env * (u < 1.0).to(u.dtype)


class BesselBasis(nn.Module):
    """``sin(n pi r / r_c) / (r / r_c)`` for n = 1..num_basis (r in Å, output dimensionless).

    Args:
        r_max: cutoff r_c, Å.
        num_basis: number of basis functions N.
        trainable: whether the frequencies ``n pi / r_c`` are learnt.
    """

    def __init__(self, r_max: float, num_basis: int = 8, trainable: bool = False):
        super().__init__()
        self.r_max = float(r_max)
        self.prefactor = self.r_max
        freqs = torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype()) * math.pi / self.r_max
        if trainable:
            self.freqs = nn.Parameter(freqs)
        else:
            self.register_buffer("freqs", freqs)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r.unsqueeze(-1)
        return self.prefactor * torch.sin(self.freqs * r) / r


class RadialEmbedding(nn.Module):
    """Bessel basis times the polynomial envelope: (E,) distances -> (E, num_basis)."""

    def __init__(self, r_max: float, num_basis: int = 8, p: int = 6, trainable: bool = False):
        super().__init__()
        self.r_max = float(r_max)
        self.p = int(p)
        self.basis = BesselBasis(r_max, num_basis, trainable)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return self.basis(r) * polynomial_envelope(r / self.r_max, self.p).unsqueeze(-1)
