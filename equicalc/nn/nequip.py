"""NequIP: message-passing E(3)-equivariant network (Batzner et al., Nat. Commun. 13, 2453, 2022).

Per layer, atom ``i`` receives ``m_i = (1/sqrt(<n>)) sum_j R(|r_ij|) (W h_j) x Y(r_ij)``,
an e3nn "uvu" tensor product of its neighbours' features with the spherical
harmonics of the edge, weighted per edge and channel by a radial MLP ``R`` of
the Bessel/envelope embedding. A species-dependent self-connection and a linear
mix follow, then a gated nonlinearity (SiLU on even scalars, tanh on odd
scalars, sigmoid gates on l > 0) and a residual update when shapes allow.

An atom with no neighbours gets exactly its species' shift as energy: the
network's output for an isolated atom of each species is evaluated in the same
pass (one extra edgeless node per species) and subtracted.
"""
from __future__ import annotations

from typing import List

import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet, Gate
from torch import nn

from .common import SpeciesScaleShift, check_hyperparameters, normalize_species, per_species_values
from .radial import RadialEmbedding
from .tensor_product import ChannelwiseTensorProduct

__all__ = ["NequIP"]


class ConvLayer(nn.Module):
    """One NequIP interaction block followed by the gate and a residual update."""

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_hidden: o3.Irreps,
        irreps_sh: o3.Irreps,
        num_species: int,
        num_basis: int,
        radial_hidden: int,
        radial_layers: int,
        avg_num_neighbors: float,
        resnet: bool,
    ):
        super().__init__()
        self.tp = ChannelwiseTensorProduct(irreps_in, irreps_sh, irreps_hidden)
        irreps_mid = self.tp.irreps_out
        reachable = {ir for _, ir in irreps_mid}
        scalars = o3.Irreps([(m, ir) for m, ir in irreps_hidden if ir.l == 0 and ir in reachable])
        gated = o3.Irreps([(m, ir) for m, ir in irreps_hidden if ir.l > 0 and ir in reachable])
        gates = o3.Irreps([(m, "0e") for m, _ in gated])
        act = {1: torch.nn.functional.silu, -1: torch.tanh}
        self.gate = Gate(
            scalars, [act[ir.p] for _, ir in scalars], gates, [torch.sigmoid] * len(gates), gated
        )
        irreps_conv_out = self.gate.irreps_in
        self.linear_1 = o3.Linear(irreps_in, irreps_in)
        self.radial_net = FullyConnectedNet(
            [num_basis] + [radial_hidden] * radial_layers + [self.tp.weight_numel], torch.nn.functional.silu
        )
        self.linear_2 = o3.Linear(irreps_mid, irreps_conv_out)
        self.self_connection = o3.FullyConnectedTensorProduct(irreps_in, f"{num_species}x0e", irreps_conv_out)
        self.inv_sqrt_neighbors = float(avg_num_neighbors) ** -0.5
        self.irreps_in = irreps_in
        self.irreps_out = self.gate.irreps_out
        self.resnet = bool(resnet) and self.irreps_in == self.irreps_out

    def forward(self, h, onehot, edge_index, edge_sh, edge_emb, emb_index):
        """``edge_emb``: radial embedding per edge, or per pair with ``emb_index`` mapping edges to pairs."""
        sc = self.self_connection(h, onehot)
        x = self.linear_1(h)
        weights = self.radial_net(edge_emb)
        agg = self.tp.convolve(x, edge_sh, weights, edge_index, emb_index) * self.inv_sqrt_neighbors
        out = self.gate(self.linear_2(agg) + sc)
        return h + out if self.resnet else out


class NequIP(nn.Module):
    """NequIP network: atomic numbers and edge vectors -> per-atom energies (eV).

    Args:
        species: chemical symbols (or atomic numbers) the model knows, in type order.
        r_max: cutoff radius, Å.
        l_max: highest rotation order of features and spherical harmonics.
        parity: O(3) features with both parities (True) or SO(3) only (False).
        num_layers: number of interaction blocks.
        num_features: channels per irrep in the hidden features.
        num_basis: number of Bessel radial basis functions.
        radial_hidden: width of the radial MLP's hidden layers.
        radial_layers: number of hidden layers of the radial MLP.
        avg_num_neighbors: mean neighbour count within r_max (message normalisation).
        readout_hidden: width of the scalar readout's hidden layer.
        resnet: residual updates between blocks of equal shape.
        poly_p: exponent p of the cutoff envelope.
        scales, shifts: per-species energy scale and shift, eV (dict, list or number).
    """

    architecture = "nequip"
    uses_edge_pairs = True  # compute_properties passes unordered-pair ids (radial networks once per pair)

    def __init__(
        self,
        species,
        r_max: float = 5.0,
        l_max: int = 1,
        parity: bool = True,
        num_layers: int = 3,
        num_features: int = 32,
        num_basis: int = 8,
        radial_hidden: int = 64,
        radial_layers: int = 2,
        avg_num_neighbors: float = 30.0,
        readout_hidden: int = 16,
        resnet: bool = True,
        poly_p: int = 6,
        scales=None,
        shifts=None,
    ):
        super().__init__()
        species = normalize_species(species)
        check_hyperparameters(
            dict(r_max=r_max, num_layers=num_layers, num_features=num_features, num_basis=num_basis,
                 radial_hidden=radial_hidden, avg_num_neighbors=avg_num_neighbors, readout_hidden=readout_hidden,
                 poly_p=poly_p),
            dict(l_max=l_max, radial_layers=radial_layers))
        self.config = dict(
            species=species, r_max=float(r_max), l_max=int(l_max), parity=bool(parity),
            num_layers=int(num_layers), num_features=int(num_features), num_basis=int(num_basis),
            radial_hidden=int(radial_hidden), radial_layers=int(radial_layers),
            avg_num_neighbors=float(avg_num_neighbors), readout_hidden=int(readout_hidden),
            resnet=bool(resnet), poly_p=int(poly_p),
        )
        self.species = species
        self.r_max = float(r_max)
        n_species = len(species)
        self.scale_shift = SpeciesScaleShift(
            species,
            per_species_values(scales, species, 1.0, "scales"),
            per_species_values(shifts, species, 0.0, "shifts"),
        )
        self.irreps_sh = o3.Irreps.spherical_harmonics(int(l_max), p=-1 if parity else 1)
        self.spherical_harmonics = o3.SphericalHarmonics(self.irreps_sh, normalize=True, normalization="component")
        self.radial = RadialEmbedding(r_max, num_basis, poly_p)
        parities = (1, -1) if parity else (1,)
        irreps_hidden = o3.Irreps([(int(num_features), (l, p)) for l in range(int(l_max) + 1) for p in parities])
        irreps = o3.Irreps(f"{int(num_features)}x0e")
        self.embedding = o3.Linear(o3.Irreps(f"{n_species}x0e"), irreps)
        layers: List[ConvLayer] = []
        for _ in range(int(num_layers)):
            layer = ConvLayer(irreps, irreps_hidden, self.irreps_sh, n_species, int(num_basis),
                              int(radial_hidden), int(radial_layers), float(avg_num_neighbors), resnet)
            layers.append(layer)
            irreps = layer.irreps_out
        self.layers = nn.ModuleList(layers)
        self.readout_1 = o3.Linear(irreps, o3.Irreps(f"{int(readout_hidden)}x0e"))
        self.readout_2 = o3.Linear(o3.Irreps(f"{int(readout_hidden)}x0e"), o3.Irreps("1x0e"))

    def _pair_radial(self, r: torch.Tensor, edge_pair):
        """Radial embedding once per unordered pair, and the pair of every edge (None: per edge).

        Edges i->j and j->i have exactly opposite vectors and bitwise equal
        lengths, so the radial networks run on half of the edges; the gradient
        reaches the positions through one edge of each pair, whose length is the
        same function of the positions as its partner's.
        """
        if edge_pair is None:
            return self.radial(r), None
        n_pairs = int(edge_pair.max()) + 1 if edge_pair.numel() else 0
        first = torch.full((n_pairs,), r.shape[0], dtype=torch.long, device=r.device)
        first = first.scatter_reduce_(0, edge_pair, torch.arange(r.shape[0], device=r.device), reduce="amin")
        return self.radial(torch.index_select(r, 0, first)), edge_pair

    def use_fused_kernels(self, enabled: bool = True) -> bool:
        """Use the fused numba convolution on CPU (inference only); returns whether it is on.

        The fused backward pass is not differentiable, so a model with fused
        kernels cannot be trained on forces; ``EquiCalc`` turns them on for CPU.
        """
        from .fused_cpu import AVAILABLE

        on = bool(enabled) and AVAILABLE
        for layer in self.layers:
            layer.tp.fused = on
        return on

    def forward(self, numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor,
                edge_pair=None) -> torch.Tensor:
        """Per-atom energies (N,), eV.

        Args:
            numbers: (N,) atomic numbers.
            edge_index: (2, E) centre ``i`` and neighbour ``j`` of each edge (|r_ij| < r_max).
            edge_vectors: (E, 3) ``r_ij`` in Å, in the model's dtype.
            edge_pair: optional (E,) unordered-pair id of each edge
                (``equicalc.neighbors.edge_pair_index``): radial networks then run once per pair.
        """
        n = numbers.shape[0]
        n_species = len(self.species)
        types = self.scale_shift.types(numbers)
        # one extra isolated node per species gives the reference subtracted below
        all_types = torch.cat([types, torch.arange(n_species, device=types.device)])
        onehot = torch.nn.functional.one_hot(all_types, n_species).to(edge_vectors.dtype)
        edge_sh = self.spherical_harmonics(edge_vectors)
        edge_emb, emb_index = self._pair_radial(edge_vectors.norm(dim=1), edge_pair)
        h = self.embedding(onehot)
        for layer in self.layers:
            h = layer(h, onehot, edge_index, edge_sh, edge_emb, emb_index)
        e = self.readout_2(torch.nn.functional.silu(self.readout_1(h))).squeeze(-1)
        e = e[:n] - e[n:][types]
        return self.scale_shift(e, types)

