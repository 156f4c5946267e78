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
from .mlp import folded_mlp
from .radial import BesselBasis, polynomial_envelope
from .specs import AllegroSpec

__all__ = ["Allegro"]


def _mlp(dims: List[int]) -> FullyConnectedNet:
    return FullyConnectedNet(dims, torch.nn.functional.silu)


def _blocks(t: torch.Tensor, irreps: o3.Irreps) -> List[torch.Tensor]:
    """(E, dim, C) with the m of every l stacked on dim 1 -> the tensor track's blocks, one (E, 2l+1, C) per irrep."""
    out, start = [], 0
    for _, ir in irreps:
        out.append(t.narrow(1, start, ir.dim))
        start += ir.dim
    return out


class _EnvWeights(nn.Module):
    """Per-channel, per-l weights of the spherical harmonics from the scalar track."""

    def __init__(self, num_scalar: int, channels: int, l_max: int):
        super().__init__()
        self.channels, self.l_max = channels, l_max
        self.linear = nn.Linear(num_scalar, channels * (l_max + 1), bias=False)
        nn.init.normal_(self.linear.weight, std=num_scalar ** -0.5)

    def forward(self, x: torch.Tensor, sh: torch.Tensor) -> torch.Tensor:
        """``x`` (E, num_scalar), ``sh`` (E, (l_max+1)^2) -> (E, (l_max+1)^2, channels): the weight of
        channel c and degree l (row ``c (l_max+1) + l`` of the linear map) times every m of that l."""
        c, n_l = self.channels, self.l_max + 1
        weight = self.linear.weight.view(c, n_l, -1).transpose(0, 1).reshape(c * n_l, -1)  # rows by (l, c)
        w = torch.mm(x, weight.t()).view(-1, n_l, c)
        w = torch.cat([w.narrow(1, l, 1).expand(-1, 2 * l + 1, -1) for l in range(n_l)], dim=1)
        return w * sh.unsqueeze(-1)


class AllegroLayer(nn.Module):
    """One Allegro layer: environment, tensor product, channel mixing, scalar-track MLP.

    ``tp`` and ``linear`` are e3nn's modules and define the layer (and its
    weights); forward computes the same products in closed form on the track's
    blocks (``_channelwise``) and applies the linear map per irrep as one
    matrix product (``_mix``), without e3nn's flat layout.
    """

    def __init__(self, irreps_tensor: o3.Irreps, channels: int, l_max: int, num_scalar: int,
                 mlp_hidden: int, mlp_layers: int, avg_num_neighbors: float, full_products: bool = True):
        super().__init__()
        self.env_weights = _EnvWeights(num_scalar, channels, l_max)
        self.irreps_tensor = irreps_tensor
        self.tp = _channelwise_products(irreps_tensor, full_products)
        self.linear = o3.Linear(self.tp.irreps_out, irreps_tensor)
        self.products = [_product_form(self.tp, ins) for ins in self.tp.instructions]
        self.scalar_outputs = [k for k, (_, ir) in enumerate(self.tp.irreps_out) if ir == o3.Irrep("0e")]
        n_scalars = sum(self.tp.irreps_out[k].mul for k in self.scalar_outputs)
        self.mlp = _mlp([num_scalar + n_scalars] + [mlp_hidden] * mlp_layers + [num_scalar])
        self.inv_sqrt_neighbors = float(avg_num_neighbors) ** -0.5

    def forward(self, x, v, sh, env, centre, n_nodes):
        """Update the scalar track ``x`` (E, S) and the tensor track ``v`` (blocks (E, 2l+1, C)) of every pair."""
        w_sh = self.env_weights(x, sh)  # (E, (l+1)^2, C)
        gamma = torch.zeros((n_nodes,) + w_sh.shape[1:], dtype=w_sh.dtype, device=w_sh.device)
        gamma = gamma.index_add_(0, centre, w_sh) * self.inv_sqrt_neighbors
        gamma_e = _blocks(torch.index_select(gamma, 0, centre), self.irreps_tensor)
        prod = [_channelwise(form, v[ins.i_in1], gamma_e[ins.i_in2])
                for form, ins in zip(self.products, self.tp.instructions)]
        scalars = [prod[k].flatten(1) for k in self.scalar_outputs]
        x_new = folded_mlp(self.mlp, torch.cat([x] + scalars, dim=1)) * env.unsqueeze(-1)
        return (x + x_new) * 2 ** -0.5, self._mix(prod)

    def _mix(self, prod: List[torch.Tensor]) -> List[torch.Tensor]:
        """e3nn's ``linear`` on the product blocks: per output irrep, one (E (2l+1), sum of C) x (sum of C, C) product."""
        inputs = [[] for _ in self.irreps_tensor]
        weights = [[] for _ in self.irreps_tensor]
        for ins, w in zip(self.linear.instructions, self.linear.weight_views()):
            inputs[ins.i_out].append(prod[ins.i_in])
            weights[ins.i_out].append(w * ins.path_weight)
        out = []
        for (mul, ir), xs, ws in zip(self.irreps_tensor, inputs, weights):
            if not xs:  # no product reaches this irrep (equal-irrep products): e3nn's linear gives zeros
                out.append(prod[0].new_zeros(prod[0].shape[0], ir.dim, mul))
                continue
            stacked = torch.cat(xs, dim=2) if len(xs) > 1 else xs[0]
            y = torch.mm(stacked.reshape(-1, stacked.shape[2]), torch.cat(ws, dim=0))
            out.append(y.view(-1, ir.dim, mul))
        return out


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


def _product_form(tp: o3.TensorProduct, ins) -> tuple:
    """A "uuu" path of ``tp`` in closed form: ("scale_left" | "scale_right" | "dot", factor) where its
    Wigner 3j symbol is a multiple of the identity, else ("general", path_weight x 3j symbol)."""
    l1, l2, l3 = (tp.irreps_in1[ins.i_in1].ir.l, tp.irreps_in2[ins.i_in2].ir.l, tp.irreps_out[ins.i_out].ir.l)
    w3j = o3.wigner_3j(l1, l2, l3, dtype=torch.float64) * ins.path_weight
    candidates = ([("scale_left", w3j[0])] if l1 == 0 else []) + ([("scale_right", w3j[:, 0])] if l2 == 0 else []) \
        + ([("dot", w3j[:, :, 0])] if l3 == 0 and l1 == l2 else [])
    for kind, matrix in candidates:
        if torch.allclose(matrix, matrix[0, 0] * torch.eye(len(matrix), dtype=torch.float64), atol=1e-14):
            return kind, float(matrix[0, 0])
    return "general", w3j


def _channelwise(form: tuple, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """One path of the channel-wise product of blocks ``a`` (E, 2 l1 + 1, C) and ``b`` (E, 2 l2 + 1, C)."""
    kind, factor = form
    if kind == "scale_left":
        return (a * factor) * b
    if kind == "scale_right":
        return a * (b * factor)
    if kind == "dot":
        return (a * b).sum(dim=1, keepdim=True) * factor
    return torch.einsum("zic,zjc,ijk->zkc", a, b, factor.to(a))


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
        x = folded_mlp(self.two_body, pair_in) * env.unsqueeze(-1)
        sh = self.spherical_harmonics(edge_vectors)
        v = _blocks(self.initial_weights(x, sh), self.irreps_tensor)
        for layer in self.layers:
            x, v = layer(x, v, sh, env, centre, n)
        pair_energy = folded_mlp(self.readout, x).squeeze(-1) * env
        e = torch.zeros(n, dtype=pair_energy.dtype, device=pair_energy.device).index_add_(0, centre, pair_energy)
        return self.with_repulsion(self.scale_shift(e, types), types, edge_index, r)
