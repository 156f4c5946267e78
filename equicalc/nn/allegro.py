"""Allegro: a strictly local equivariant network (Musaelian et al., Nat. Commun. 14, 579, 2023).

State lives on ordered pairs ``(i, j)`` with ``r_ij < r_max``: a scalar track
``x_ij`` and an equivariant tensor track ``V_ij`` (``num_tensor_features``
channels of every irrep up to ``l_max``).

* Two-body embedding: ``x_ij = MLP(onehot(Z_i), onehot(Z_j), B(r_ij)) u(r_ij)``
  and ``V_ij = w(x_ij) Y(r_ij)`` (per channel and l), with ``B`` the Bessel
  basis and ``u`` the polynomial cutoff envelope.
* Each layer builds the environment of the centre atom,
  ``Γ_i = (1/sqrt(<n>)) Σ_k w(x_ik) Y(r_ik)``, takes the channel-wise tensor
  product ``V_ij ⊗ Γ_i``, mixes channels per irrep into the new ``V_ij``, and
  feeds the product's scalars with ``x_ij`` through an MLP:
  ``x_ij <- (x_ij + MLP(x_ij, scalars) u(r_ij)) / sqrt(2)``.
* Pair energies ``E_ij = readout(x_ij)``; ``E_i = scale_s Σ_j E_ij + shift_s``.

Everything attached to atom ``i`` is built from the pairs ``(i, k)`` within
``r_max`` only, so an atom's energy depends on nothing beyond ``r_max``; every
pair term carries the envelope, so the energy is smooth when atoms cross it.
An isolated atom has exactly its species' shift.
"""
from __future__ import annotations

from typing import List

import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet
from torch import nn

from .common import SpeciesScaleShift, check_hyperparameters, normalize_species, per_species_values
from .radial import BesselBasis, polynomial_envelope

__all__ = ["Allegro"]


def _mlp(dims: List[int]) -> FullyConnectedNet:
    return FullyConnectedNet(dims, torch.nn.functional.silu)


class _EnvWeights(nn.Module):
    """Per-channel, per-l weights of the spherical harmonics from the scalar track."""

    def __init__(self, num_scalar: int, channels: int, l_max: int):
        super().__init__()
        self.channels, self.l_max = channels, l_max
        self.linear = nn.Linear(num_scalar, channels * (l_max + 1), bias=False)
        nn.init.normal_(self.linear.weight, std=num_scalar ** -0.5)
        # index expanding per-l weights to every m of each l: [0, 1, 1, 1, 2, 2, 2, 2, 2, ...]
        self.register_buffer("l_of_m", torch.tensor([l for l in range(l_max + 1) for _ in range(2 * l + 1)]),
                             persistent=False)

    def forward(self, x: torch.Tensor, sh: torch.Tensor) -> torch.Tensor:
        """``x`` (E, num_scalar), ``sh`` (E, (l_max+1)^2) -> (E, channels, (l_max+1)^2)."""
        w = self.linear(x).view(-1, self.channels, self.l_max + 1)
        return w[:, :, self.l_of_m] * sh.unsqueeze(1)


class AllegroLayer(nn.Module):
    """One Allegro layer: environment, tensor product, channel mixing, scalar-track MLP."""

    def __init__(self, irreps_tensor: o3.Irreps, channels: int, l_max: int, num_scalar: int,
                 mlp_hidden: int, mlp_layers: int, avg_num_neighbors: float):
        super().__init__()
        self.env_weights = _EnvWeights(num_scalar, channels, l_max)
        self.irreps_tensor = irreps_tensor
        # only products that the tensor track (or the scalar track) can take are formed
        self.tp = o3.ElementwiseTensorProduct(irreps_tensor, irreps_tensor,
                                              filter_ir_out=[ir for _, ir in irreps_tensor])
        self.linear = o3.Linear(self.tp.irreps_out, irreps_tensor)
        n_scalars = sum(mul for mul, ir in self.tp.irreps_out if ir == o3.Irrep("0e"))
        self.register_buffer("scalar_mask", torch.cat([
            torch.full((mul * ir.dim,), ir == o3.Irrep("0e"), dtype=torch.bool) for mul, ir in self.tp.irreps_out
        ]), persistent=False)
        self.mlp = _mlp([num_scalar + n_scalars] + [mlp_hidden] * mlp_layers + [num_scalar])
        self.inv_sqrt_neighbors = float(avg_num_neighbors) ** -0.5

    def forward(self, x, v, sh_full, env, centre, n_nodes):
        """Update the scalar track ``x`` (E, S) and the tensor track ``v`` (E, dim) of every pair."""
        w_sh = self.env_weights(x, sh_full)  # (E, C, (l+1)^2)
        gamma = torch.zeros((n_nodes,) + w_sh.shape[1:], dtype=w_sh.dtype, device=w_sh.device)
        gamma = gamma.index_add_(0, centre, w_sh) * self.inv_sqrt_neighbors
        gamma_e = _to_irreps_layout(torch.index_select(gamma, 0, centre), self.irreps_tensor)
        prod = self.tp(v, gamma_e)
        v_new = self.linear(prod)
        scalars = prod[:, self.scalar_mask]
        x_new = self.mlp(torch.cat([x, scalars], dim=1)) * env.unsqueeze(-1)
        return (x + x_new) * 2 ** -0.5, v_new


def _to_irreps_layout(t: torch.Tensor, irreps: o3.Irreps) -> torch.Tensor:
    """(E, C, (l_max+1)^2) channel-major per m -> e3nn layout of ``C x l`` blocks (E, dim)."""
    blocks, start = [], 0
    for mul, ir in irreps:
        d = ir.dim
        blocks.append(t[:, :, start:start + d].reshape(t.shape[0], mul * d))
        start += d
    return torch.cat(blocks, dim=1)


class Allegro(nn.Module):
    """Allegro network: atomic numbers and edge vectors -> per-atom energies (eV).

    Args:
        species: chemical symbols (or atomic numbers) the model knows, in type order.
        r_max: cutoff radius, Å (nothing beyond it affects an atom's energy).
        l_max: highest rotation order of the tensor track.
        parity: tensor track irreps ``l`` with parity ``(-1)^l`` (True: O(3)) or ``p = 1`` (False: SO(3)).
        num_layers: number of tensor-product layers (body order grows with it).
        num_scalar_features: width of the scalar track.
        num_tensor_features: channels per irrep of the tensor track.
        mlp_hidden: width of the hidden layers of the two-body, latent and readout MLPs.
        mlp_layers: hidden layers of the two-body and latent MLPs.
        num_basis: number of Bessel radial basis functions.
        avg_num_neighbors: mean neighbour count within r_max (environment normalisation).
        poly_p: exponent p of the cutoff envelope.
        scales, shifts: per-species energy scale and shift, eV (dict, list or number).
    """

    architecture = "allegro"

    def __init__(
        self,
        species,
        r_max: float = 5.0,
        l_max: int = 1,
        parity: bool = True,
        num_layers: int = 2,
        num_scalar_features: int = 64,
        num_tensor_features: int = 16,
        mlp_hidden: int = 64,
        mlp_layers: int = 2,
        num_basis: int = 8,
        avg_num_neighbors: float = 30.0,
        poly_p: int = 6,
        scales=None,
        shifts=None,
    ):
        super().__init__()
        species = normalize_species(species)
        check_hyperparameters(
            dict(r_max=r_max, num_layers=num_layers, num_scalar_features=num_scalar_features,
                 num_tensor_features=num_tensor_features, mlp_hidden=mlp_hidden, num_basis=num_basis,
                 avg_num_neighbors=avg_num_neighbors, poly_p=poly_p),
            dict(l_max=l_max, mlp_layers=mlp_layers))
        self.config = dict(
            species=species, r_max=float(r_max), l_max=int(l_max), parity=bool(parity), num_layers=int(num_layers),
            num_scalar_features=int(num_scalar_features), num_tensor_features=int(num_tensor_features),
            mlp_hidden=int(mlp_hidden), mlp_layers=int(mlp_layers), num_basis=int(num_basis),
            avg_num_neighbors=float(avg_num_neighbors), poly_p=int(poly_p),
        )
        self.species = species
        self.r_max = float(r_max)
        self.poly_p = int(poly_p)
        n_species = len(species)
        self.scale_shift = SpeciesScaleShift(
            species,
            per_species_values(scales, species, 1.0, "scales"),
            per_species_values(shifts, species, 0.0, "shifts"),
        )
        l_max, channels, n_scalar = int(l_max), int(num_tensor_features), int(num_scalar_features)
        self.irreps_sh = o3.Irreps.spherical_harmonics(l_max, p=-1 if parity else 1)
        self.spherical_harmonics = o3.SphericalHarmonics(self.irreps_sh, normalize=True, normalization="component")
        self.irreps_tensor = o3.Irreps([(channels, ir) for _, ir in self.irreps_sh])
        self.basis = BesselBasis(r_max, int(num_basis))
        self.two_body = _mlp([2 * n_species + int(num_basis)] + [int(mlp_hidden)] * int(mlp_layers) + [n_scalar])
        self.initial_weights = _EnvWeights(n_scalar, channels, l_max)
        self.layers = nn.ModuleList([
            AllegroLayer(self.irreps_tensor, channels, l_max, n_scalar, int(mlp_hidden), int(mlp_layers),
                         float(avg_num_neighbors))
            for _ in range(int(num_layers))
        ])
        self.readout = _mlp([n_scalar, int(mlp_hidden), 1])

    def forward(self, numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor,
                edge_pair=None) -> torch.Tensor:
        """Per-atom energies (N,), eV.

        Args:
            numbers: (N,) atomic numbers.
            edge_index: (2, E) centre ``i`` and neighbour ``j`` of each edge (|r_ij| < r_max).
            edge_vectors: (E, 3) ``r_ij`` in Å, in the model's dtype.
            edge_pair: accepted for a common signature and not used (pair features are ordered).
        """
        n = numbers.shape[0]
        n_species = len(self.species)
        types = self.scale_shift.types(numbers)
        centre, neighbour = edge_index[0], edge_index[1]
        r = edge_vectors.norm(dim=1)
        env = polynomial_envelope(r / self.r_max, self.poly_p)
        onehot = torch.nn.functional.one_hot(types, n_species).to(edge_vectors.dtype)
        pair_in = torch.cat([torch.index_select(onehot, 0, centre), torch.index_select(onehot, 0, neighbour),
                             self.basis(r)], dim=1)
        x = self.two_body(pair_in) * env.unsqueeze(-1)
        sh = self.spherical_harmonics(edge_vectors)
        v = _to_irreps_layout(self.initial_weights(x, sh), self.irreps_tensor)
        for layer in self.layers:
            x, v = layer(x, v, sh, env, centre, n)
        pair_energy = self.readout(x).squeeze(-1) * env
        e = torch.zeros(n, dtype=pair_energy.dtype, device=pair_energy.device).index_add_(0, centre, pair_energy)
        return self.scale_shift(e, types)
