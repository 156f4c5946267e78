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

import copy
from typing import List

import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet, Gate
from torch import nn

from .common import EnergyModel
from .mlp import folded_mlp
from .radial import RadialEmbedding
from .radial_table import RadialTable
from .specs import NequIPSpec
from .tensor_product import ChannelwiseTensorProduct

__all__ = ["NequIP", "DenseLinear", "LeanGate", "SpeciesLinear", "freeze_gates", "freeze_linears",
           "freeze_self_connections", "freeze_radial_networks"]


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
        self.num_species = num_species
        self.inv_sqrt_neighbors = float(avg_num_neighbors) ** -0.5
        self.irreps_in = irreps_in
        self.irreps_out = self.gate.irreps_out
        self.resnet = bool(resnet) and self.irreps_in == self.irreps_out

    def forward(self, h, onehot, edge_index, edge_sh, weights, weight_index):
        """``weights``: this layer's radial weights per edge, or per pair with ``weight_index`` mapping edges to
        pairs (``self.radial_net`` of the radial embedding, or the model's ``RadialTable``)."""
        sc = self.self_connection(h, onehot)
        x = self.linear_1(h)
        agg = self.tp.convolve(x, edge_sh, weights, edge_index, weight_index) * self.inv_sqrt_neighbors
        out = self.gate(self.linear_2(agg) + sc)
        return h + out if self.resnet else out


class SpeciesLinear(nn.Module):
    """A frozen self-connection as one matrix per species: ``h -> h @ M[species]`` in one matmul.

    The same linear map as the ``FullyConnectedTensorProduct`` of the node features
    with the species one-hot that it replaces (the matrices are that product
    evaluated on unit vectors, in float64). e3nn's general tensor product is 4 to 6
    times slower for this one-hot case. The weights are fixed, so this is for
    inference only; the tensor product's ``weight`` and ``output_mask`` stay as
    buffers, so the state dict (and a calculator's fingerprint) do not change.
    """

    fused = True  # inference only: compute_properties refuses to train through it

    def __init__(self, tp: o3.FullyConnectedTensorProduct, num_species: int):
        super().__init__()
        self.register_buffer("weight", tp.weight.detach().clone())
        self.register_buffer("output_mask", tp.output_mask.clone())
        exact = copy.deepcopy(tp).to(torch.float64)
        units = torch.eye(tp.irreps_in1.dim, dtype=torch.float64, device=tp.weight.device)
        with torch.no_grad():
            blocks = [exact(units, torch.nn.functional.one_hot(torch.full_like(units[:, 0], s, dtype=torch.long),
                                                               num_species).to(torch.float64))
                      for s in range(num_species)]
        self.register_buffer("matrix", torch.cat(blocks, dim=1).to(tp.weight.dtype), persistent=False)
        self.num_species, self.dim_out = num_species, tp.irreps_out.dim

    def permute(self, outputs: torch.Tensor):
        """Give the outputs in the order ``y[:, outputs]`` (a gate's input order, folded into the matrices)."""
        m = self.matrix.view(self.matrix.shape[0], self.num_species, self.dim_out)
        self.matrix = m[:, :, outputs.to(m.device)].reshape(self.matrix.shape).contiguous()

    def forward(self, h: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        out = torch.mm(h, self.matrix).view(h.shape[0], self.num_species, self.dim_out)
        return (out * onehot.unsqueeze(-1)).sum(dim=1)


class DenseLinear(nn.Module):
    """A frozen e3nn ``o3.Linear`` as one dense matrix: ``x -> x @ M + b`` in one matmul (inference only).

    ``M`` is the linear map evaluated on unit vectors in float64, zero between
    irreps that e3nn does not connect. For the reference model's six linears the
    one matmul was as fast as e3nn's per-instruction products or faster at every
    size measured (110 to 2000 atoms; 2.5x faster at 110 atoms in float32, equal
    at 2000 in float64). The e3nn module's state dict is kept as buffers, so the
    model's state dict does not change.
    """

    fused = True  # inference only: compute_properties refuses to train through it

    def __init__(self, linear: o3.Linear):
        super().__init__()
        for name, value in linear.state_dict().items():
            self.register_buffer(name, value.detach().clone())
        exact = copy.deepcopy(linear).to(torch.float64)
        with torch.no_grad():
            bias = exact(torch.zeros(1, linear.irreps_in.dim, dtype=torch.float64, device=linear.weight.device))
            matrix = exact(torch.eye(linear.irreps_in.dim, dtype=torch.float64, device=linear.weight.device)) - bias
        dtype = linear.weight.dtype
        self.register_buffer("matrix", matrix.to(dtype), persistent=False)
        self.register_buffer("offset", bias.to(dtype) if bool(bias.any()) else None, persistent=False)
        self.irreps_in, self.irreps_out = linear.irreps_in, linear.irreps_out

    def permute(self, inputs=None, outputs=None):
        """Fold permutations of the features into the matrix: the new inputs ``x`` give the old ones as
        ``x[:, inputs]``, and the new outputs are the old ones' ``y[:, outputs]`` (how the fused
        convolution's own feature layout is absorbed)."""
        with torch.no_grad():
            if inputs is not None:
                self.matrix = self.matrix[torch.argsort(inputs).to(self.matrix.device)].contiguous()
            if outputs is not None:
                outputs = outputs.to(self.matrix.device)
                self.matrix = self.matrix[:, outputs].contiguous()
                self.offset = None if self.offset is None else self.offset[:, outputs].contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.mm(x, self.matrix) if self.offset is None else torch.addmm(self.offset, x, self.matrix)


def freeze_linears(model):
    """Give ``model``'s NequIP layers ``DenseLinear`` linears (in place; inference only), and where a layer's
    convolution is fused (``equicalc.nn.fused_cpu.fuse``), fold its feature layout into them.

    Call after ``fuse``, with the model's final dtype and device. Other models come back unchanged.
    """
    for layer in model.modules():
        if not isinstance(layer, ConvLayer) or isinstance(layer.linear_1, DenseLinear):
            continue
        layer.linear_1, layer.linear_2 = DenseLinear(layer.linear_1), DenseLinear(layer.linear_2)
        if getattr(layer.tp, "fused", False):
            to_mu, from_mu = layer.tp.take_layouts()
            layer.linear_1.permute(outputs=to_mu)
            layer.linear_2.permute(inputs=from_mu)
    return model


class LeanGate(nn.Module):
    """A frozen e3nn ``Gate`` in a few operations, on inputs ordered [scalars | gates | gated] (inference only).

    The same activations (with e3nn's normalisation constants) and products as
    the gate it replaces; ``order`` says which of that gate's inputs each new
    input is, and ``freeze_gates`` folds it into the linear maps that feed the
    gate, so the slices here are views. Its output is the e3nn gate's.
    """

    fused = True  # inference only: compute_properties refuses to train through it

    def __init__(self, gate: Gate):
        super().__init__()
        device = next((b.device for b in gate.buffers()), torch.device("cpu"))
        index = torch.arange(gate.irreps_in.dim, dtype=torch.float64, device=device)[None]
        scalars, gates, gated = gate.sc(index)
        self.register_buffer("order", torch.cat([scalars, gates, gated], dim=1)[0].long(), persistent=False)
        self.act_scalars = gate.act_scalars  # e3nn's Activation: one slice and function per block
        self.mul = gate.mul  # not called: kept so that the model's state dict does not change
        acts = {(a.f, a.cst) for a in gate.act_gates.acts}
        if len(acts) != 1:
            raise ValueError("LeanGate needs one activation for all gates")
        (self.gate_act, self.gate_cst), = acts
        self.n_scalars, self.n_gates = scalars.shape[1], gates.shape[1]
        self.groups: List[tuple] = []  # (channels, dimension) of consecutive gated blocks of equal dimension
        for mul, ir in gate.irreps_gated:
            if self.groups and self.groups[-1][1] == ir.dim:
                self.groups[-1] = (self.groups[-1][0] + mul, ir.dim)
            else:
                self.groups.append((mul, ir.dim))
        ones = torch.ones(1, gate.irreps_gated.dim, dtype=torch.float64, device=device)
        if not bool((gate.mul(ones, torch.ones(1, self.n_gates, dtype=torch.float64, device=device)) == 1).all()):
            raise ValueError("LeanGate expects e3nn's gate product to be a plain product")
        self.irreps_in, self.irreps_out = gate.irreps_in, gate.irreps_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, s, g = x.shape[0], self.n_scalars, self.n_gates
        gates = self.gate_act(x[:, s:s + g]) * self.gate_cst
        parts = [self.act_scalars(x[:, :s])]
        x_off, g_off = s + g, 0
        for mul, dim in self.groups:
            block = x[:, x_off:x_off + mul * dim].view(n, mul, dim) * gates[:, g_off:g_off + mul].unsqueeze(-1)
            parts.append(block.view(n, mul * dim))
            x_off, g_off = x_off + mul * dim, g_off + mul
        return torch.cat(parts, dim=1)


def freeze_gates(model):
    """Give ``model``'s NequIP layers a ``LeanGate`` (in place; inference only), with its input order folded
    into the layer's linear_2 and self-connection, which become ``DenseLinear`` and ``SpeciesLinear``.

    Call after ``fuse``, with the model's final dtype and device. Other models come back unchanged.
    """
    freeze_self_connections(model)
    freeze_linears(model)
    for layer in model.modules():
        if isinstance(layer, ConvLayer) and not isinstance(layer.gate, LeanGate):
            layer.gate = LeanGate(layer.gate)
            layer.linear_2.permute(outputs=layer.gate.order)
            layer.self_connection.permute(layer.gate.order)
    return model


def freeze_self_connections(model):
    """Give ``model``'s NequIP layers ``SpeciesLinear`` self-connections (in place; inference only).

    Call after the model has its final dtype and device. Other models come back unchanged.
    """
    for layer in model.modules():
        if isinstance(layer, ConvLayer) and not isinstance(layer.self_connection, SpeciesLinear):
            layer.self_connection = SpeciesLinear(layer.self_connection, layer.num_species)
    return model


def freeze_radial_networks(model, spacing=None):
    """Give a NequIP ``model`` a ``RadialTable`` of its radial networks (in place; inference only).

    Call after the model has its final dtype and device; ``spacing``: the table's
    grid, Å (None: the table's default for the model's dtype). Other models come back unchanged.
    """
    if isinstance(model, NequIP) and model.radial_table is None:
        model.radial_table = RadialTable(model, spacing)
    return model


class NequIP(EnergyModel):
    """NequIP network: atomic numbers and edge vectors -> per-atom energies (eV).

    Built from a ``NequIPSpec`` (its fields are the hyperparameters, with units
    and defaults); the per-species energy ``scale`` and ``shift`` are weights,
    set with ``model.scale_shift.set(...)`` or by ``build_model``.
    """

    spec_class = NequIPSpec
    uses_edge_pairs = True  # compute_properties passes unordered-pair ids (radial networks once per pair)

    def __init__(self, spec: NequIPSpec):
        super().__init__(spec)
        n_species = len(self.species)
        self.irreps_sh = o3.Irreps.spherical_harmonics(spec.l_max, p=-1 if spec.parity else 1)
        self.spherical_harmonics = o3.SphericalHarmonics(self.irreps_sh, normalize=True, normalization="component")
        self.radial = RadialEmbedding(spec.r_max, spec.num_basis, spec.poly_p)
        parities = (1, -1) if spec.parity else (1,)
        irreps_hidden = o3.Irreps([(spec.num_features, (l, p)) for l in range(spec.l_max + 1) for p in parities])
        irreps = o3.Irreps(f"{spec.num_features}x0e")
        self.embedding = o3.Linear(o3.Irreps(f"{n_species}x0e"), irreps)
        layers: List[ConvLayer] = []
        for _ in range(spec.num_layers):
            layer = ConvLayer(irreps, irreps_hidden, self.irreps_sh, n_species, spec.num_basis, spec.radial_hidden,
                              spec.radial_layers, spec.avg_num_neighbors, spec.resnet)
            layers.append(layer)
            irreps = layer.irreps_out
        self.layers = nn.ModuleList(layers)
        self.readout_1 = o3.Linear(irreps, o3.Irreps(f"{spec.readout_hidden}x0e"))
        self.readout_2 = o3.Linear(o3.Irreps(f"{spec.readout_hidden}x0e"), o3.Irreps("1x0e"))
        self.radial_table = None  # a RadialTable (freeze_radial_networks; inference only)

    @staticmethod
    def weight_shapes(spec: NequIPSpec) -> dict:
        """Shapes of weights that pin every size of ``spec`` (checked before a model file allocates anything)."""
        n_sp, f, h, r = len(spec.species), spec.num_features, spec.radial_hidden, spec.radial_layers
        dims = [spec.num_basis] + [h] * r
        shapes = {"scale_shift.scales": (n_sp,), "embedding.weight": (n_sp * f,), "radial.basis.freqs": (spec.num_basis,),
                  "readout_2.weight": (spec.readout_hidden,),
                  # layer 0 convolves scalars with Y_0..Y_l_max: one weight per channel and l
                  f"layers.0.radial_net.layer{r}.weight": (dims[-1], f * (spec.l_max + 1))}
        for k in range(spec.num_layers):
            for j in range(r):
                shapes[f"layers.{k}.radial_net.layer{j}.weight"] = (dims[j], dims[j + 1])
        return shapes

    def _radial_weights(self, r: torch.Tensor, edge_pair):
        """Every layer's radial weights once per unordered pair, and the pair of every edge (None: per edge).

        Edges i->j and j->i have exactly opposite vectors and bitwise equal
        lengths, so the radial networks run on half of the edges; the gradient
        reaches the positions through one edge of each pair, whose length is the
        same function of the positions as its partner's. With a ``radial_table``
        (``freeze_radial_networks``) the weights are interpolated instead.
        """
        if edge_pair is not None:
            n_pairs = int(edge_pair.max()) + 1 if edge_pair.numel() else 0
            first = torch.full((n_pairs,), r.shape[0], dtype=torch.long, device=r.device)
            first = first.scatter_reduce_(0, edge_pair, torch.arange(r.shape[0], device=r.device), reduce="amin")
            r = torch.index_select(r, 0, first)
        if self.radial_table is not None:
            return self.radial_table(r), edge_pair
        emb = self.radial(r)
        return [folded_mlp(layer.radial_net, emb) for layer in self.layers], edge_pair

    def forward(self, numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor,
                edge_pair=None, layer_edges=None) -> torch.Tensor:
        """Per-atom energies (N,), eV (arguments: ``EnergyModel``); radial networks run once per pair.

        ``layer_edges`` (per layer, how many of the first edges it convolves over,
        or None for all of them; None instead of the list: all edges in every
        layer) lets a layer skip edges: the energies stay exact for the atoms
        whose receptive field the layers' edges cover (how LAMMPS skips the
        ghost atoms' outer layers, with the edges ordered by distance from its
        own atoms).
        """
        n = numbers.shape[0]
        n_species = len(self.species)
        types = self.scale_shift.types(numbers)
        # one extra isolated node per species gives the reference subtracted below
        all_types = torch.cat([types, torch.arange(n_species, device=types.device)])
        onehot = torch.nn.functional.one_hot(all_types, n_species).to(edge_vectors.dtype)
        edge_sh = self.spherical_harmonics(edge_vectors)
        lengths = edge_vectors.norm(dim=1)
        weights, weight_index = self._radial_weights(lengths, edge_pair)
        h = self.embedding(onehot)
        for k, layer in enumerate(self.layers):
            if layer_edges is None or layer_edges[k] is None:
                h = layer(h, onehot, edge_index, edge_sh, weights[k], weight_index)
            else:
                used = layer_edges[k]
                w = weights[k] if weight_index is None else torch.index_select(weights[k], 0, weight_index)
                h = layer(h, onehot, edge_index[:, :used], edge_sh[:used], w[:used], None)
        e = self.readout_2(torch.nn.functional.silu(self.readout_1(h))).squeeze(-1)
        e = e[:n] - e[n:][types]
        return self.with_repulsion(self.scale_shift(e, types), types, edge_index, lengths)

