"""Allegro: a strictly local equivariant network (Musaelian et al., Nat. Commun. 14, 579, 2023).

State lives on ordered pairs ``(i, j)`` with ``r_ij < r_max``: a scalar track
``x_ij`` and an equivariant tensor track ``V_ij`` (``num_tensor_features``
channels of every irrep up to ``l_max``).

* Two-body embedding: ``x_ij = MLP(onehot(Z_i), onehot(Z_j), B(r_ij)) u(r_ij)``
  and ``V_ij = w(x_ij) Y(r_ij)`` (per channel and l), with ``B`` the Bessel
  basis and ``u`` the polynomial cutoff envelope.
* Each layer builds the environment of the centre atom,
  ``Γ_i = (1/sqrt(<n>)) Σ_k w(x_ik) Y(r_ik)``, takes the channel-wise tensor
  product ``V_ij ⊗ Γ_i`` (every pair of irreps whose product holds an irrep of
  the track: 0e x 1o -> 1o, 1o x 1o -> 0e, ...; ``full_products``), mixes
  channels per irrep into the new ``V_ij``, and
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

from .common import EnergyModel
from .radial import BesselBasis, polynomial_envelope
from .specs import AllegroSpec

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
                 mlp_hidden: int, mlp_layers: int, avg_num_neighbors: float, full_products: bool = True):
        super().__init__()
        self.env_weights = _EnvWeights(num_scalar, channels, l_max)
        self.irreps_tensor = irreps_tensor
        self.tp = _channelwise_products(irreps_tensor, full_products)
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


def _channelwise_products(irreps: o3.Irreps, full: bool) -> o3.TensorProduct:
    """Channel by channel ("uuu"), the products of ``V_ij`` and ``Γ_i`` that give an irrep of the track:
    of every irrep with every irrep (``full``), or only of equal irreps (the pairing of
    ``ElementwiseTensorProduct``, with which the track's l > 0 part has no source after the first layer)."""
    wanted = [ir for _, ir in irreps]
    if not full:
        return o3.ElementwiseTensorProduct(irreps, irreps, filter_ir_out=wanted)
    out, instructions = [], []
    for i1, (mul, ir1) in enumerate(irreps):
        for i2, (_, ir2) in enumerate(irreps):
            for ir in ir1 * ir2:
                if ir in wanted:
                    instructions.append((i1, i2, len(out), "uuu", False))
                    out.append((mul, ir))
    return o3.TensorProduct(irreps, irreps, o3.Irreps(out), instructions)


def _to_irreps_layout(t: torch.Tensor, irreps: o3.Irreps) -> torch.Tensor:
    """(E, C, (l_max+1)^2) channel-major per m -> e3nn layout of ``C x l`` blocks (E, dim)."""
    blocks, start = [], 0
    for mul, ir in irreps:
        d = ir.dim
        blocks.append(t[:, :, start:start + d].reshape(t.shape[0], mul * d))
        start += d
    return torch.cat(blocks, dim=1)


class Allegro(EnergyModel):
    """Allegro network: atomic numbers and edge vectors -> per-atom energies (eV).

    Built from an ``AllegroSpec`` (its fields are the hyperparameters, with units
    and defaults); the per-species energy ``scale`` and ``shift`` are weights,
    set with ``model.scale_shift.set(...)`` or by ``build_model``.
    """

    spec_class = AllegroSpec

    def __init__(self, spec: AllegroSpec):
        super().__init__(spec)
        self.poly_p = spec.poly_p
        n_species = len(self.species)
        l_max, channels, n_scalar = spec.l_max, spec.num_tensor_features, spec.num_scalar_features
        self.irreps_sh = o3.Irreps.spherical_harmonics(l_max, p=-1 if spec.parity else 1)
        self.spherical_harmonics = o3.SphericalHarmonics(self.irreps_sh, normalize=True, normalization="component")
        self.irreps_tensor = o3.Irreps([(channels, ir) for _, ir in self.irreps_sh])
        self.basis = BesselBasis(spec.r_max, spec.num_basis)
        self.two_body = _mlp([2 * n_species + spec.num_basis] + [spec.mlp_hidden] * spec.mlp_layers + [n_scalar])
        self.initial_weights = _EnvWeights(n_scalar, channels, l_max)
        self.layers = nn.ModuleList([
            AllegroLayer(self.irreps_tensor, channels, l_max, n_scalar, spec.mlp_hidden, spec.mlp_layers,
                         spec.avg_num_neighbors, spec.full_products)
            for _ in range(spec.num_layers)
        ])
        self.readout = _mlp([n_scalar, spec.mlp_hidden, 1])

    @staticmethod
    def weight_shapes(spec: AllegroSpec) -> dict:
        """Shapes of weights that pin every size of ``spec`` (checked before a model file allocates anything)."""
        n_sp, hidden, n_scalar = len(spec.species), spec.mlp_hidden, spec.num_scalar_features
        dims = [2 * n_sp + spec.num_basis] + [hidden] * spec.mlp_layers + [n_scalar]
        channels, l_max = spec.num_tensor_features, spec.l_max
        shapes = {"scale_shift.scales": (n_sp,), "basis.freqs": (spec.num_basis,),
                  "initial_weights.linear.weight": (channels * (l_max + 1), n_scalar),
                  "readout.layer0.weight": (n_scalar, hidden), "readout.layer1.weight": (hidden, 1)}
        for j in range(len(dims) - 1):
            shapes[f"two_body.layer{j}.weight"] = (dims[j], dims[j + 1])
        for k in range(spec.num_layers):
            shapes[f"layers.{k}.env_weights.linear.weight"] = (channels * (l_max + 1), n_scalar)
            shapes[f"layers.{k}.linear.output_mask"] = (channels * (l_max + 1) ** 2,)
            shapes[f"layers.{k}.mlp.layer{spec.mlp_layers}.weight"] = (hidden if spec.mlp_layers else None, n_scalar)
        return shapes

    def forward(self, numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor,
                edge_pair=None) -> torch.Tensor:
        """Per-atom energies (N,), eV (arguments: ``EnergyModel``; ``edge_pair`` is not used: pairs are ordered)."""
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
        return self.with_repulsion(self.scale_shift(e, types), types, edge_index, r)
