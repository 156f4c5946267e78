"""Channel-wise ("uvu") tensor product of node features with edge spherical harmonics.

For every path ``(l1, p1) x (l2, p2) -> (l3, p3)`` and channel ``u``:

    out[e, u, m3] = w[e, u, path] * sqrt(2 l3 + 1) * sum_{m1, m2} C[m1, m2, m3] x[e, u, m1] y[e, m2]

with ``C`` e3nn's real Wigner 3j symbols, so components stay of unit variance.
Each path gives its own output block (a later linear layer mixes them).

Speed: consecutive input blocks of equal ``l`` (e.g. ``0e`` and ``0o``) are
handled together, and the paths that reduce to simple operations are computed
as such: ``l2 = 0`` (a per-edge scale), ``l1 = 0`` (an outer product),
``l1 = l2, l3 = 0`` (a dot product) and ``1 x 1 -> 1`` (a cross product). Other
paths use a batched matmul against a per-edge (d1, d3) matrix built from the
harmonics. Every special case is checked against the Wigner 3j tensor at
construction, so the result is the same contraction in all cases.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
from e3nn import o3
from torch import nn

from . import conv_kernels
from .conv_kernels import ConvolutionPlan

__all__ = ["ChannelwiseTensorProduct"]


def _levi_civita() -> torch.Tensor:
    eps = torch.zeros(3, 3, 3, dtype=torch.float64)
    for (i, j, k), s in {(0, 1, 2): 1, (1, 2, 0): 1, (2, 0, 1): 1, (0, 2, 1): -1, (2, 1, 0): -1, (1, 0, 2): -1}.items():
        eps[i, j, k] = s
    return eps


def _classify(cg: torch.Tensor, l1: int, l2: int, l3: int) -> Tuple[str, float]:
    """Which fast form the contraction ``cg`` (d1, d2, d3) takes, and its constant."""
    def is_multiple(ref):
        c = float((cg * ref).sum() / (ref * ref).sum())
        return abs(c) > 0 and torch.allclose(cg, c * ref, atol=1e-6), c

    if l2 == 0:
        ok, c = is_multiple(torch.eye(2 * l1 + 1, dtype=torch.float64).unsqueeze(1))
        if ok:
            return "scale", c
    if l1 == 0:
        ok, c = is_multiple(torch.eye(2 * l2 + 1, dtype=torch.float64).unsqueeze(0))
        if ok:
            return "outer", c
    if l1 == l2 and l3 == 0:
        ok, c = is_multiple(torch.eye(2 * l1 + 1, dtype=torch.float64).unsqueeze(2))
        if ok:
            return "dot", c
    if l1 == l2 == l3 == 1:
        ok, c = is_multiple(_levi_civita())
        if ok:
            return "cross", c
    return "general", 1.0


class ChannelwiseTensorProduct(nn.Module):
    """Per-edge weighted "uvu" tensor product ``x (x) Y`` restricted to ``irreps_target``.

    ``convolve`` runs on CPU on the numba kernels of ``equicalc.nn.conv_kernels``
    (``kernels = True``, the default) and elsewhere on PyTorch operations: the same
    contraction, differentiable to any order either way (training differentiates
    forces). ``equicalc.nn.fused_cpu.fuse`` swaps it for the inference-only kernels
    of ``FusedChannelwiseTensorProduct``.

    Args:
        irreps_in: irreps of the node features ``x``.
        irreps_sh: irreps of the edge spherical harmonics ``y`` (multiplicity 1 each).
        irreps_target: irreps the output may contain (multiplicities ignored).

    Attributes:
        irreps_out: the output blocks, path by path.
        weight_numel: number of per-edge weights (one per channel and path).
        kernels: convolve CPU tensors on the numba kernels (False: on PyTorch operations, the reference).
    """

    fused = False  # the fused subclass says True
    kernels = True
    def __init__(self, irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_target: o3.Irreps):
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_sh = o3.Irreps(irreps_sh)
        self.irreps_target = o3.Irreps(irreps_target)
        wanted = {ir for _, ir in o3.Irreps(irreps_target)}
        for mul, _ in self.irreps_sh:
            if mul != 1:
                raise ValueError("irreps_sh must have multiplicity 1")
        # groups of consecutive input blocks with the same l
        groups: List[List[int]] = []
        for i, (_, ir) in enumerate(self.irreps_in):
            if groups and self.irreps_in[groups[-1][0]][1].l == ir.l:
                groups[-1].append(i)
            else:
                groups.append([i])
        # split groups whose blocks do not all reach the same set of outputs
        units: List[List[int]] = []
        for g in groups:
            reach = [
                tuple((j, ir_out.l) for j, (_, ir_sh) in enumerate(self.irreps_sh)
                      for ir_out in self.irreps_in[i][1] * ir_sh if ir_out in wanted)
                for i in g
            ]
            units.extend([g] if all(r == reach[0] for r in reach) else [[i] for i in g])
        self.units = units  # groups of input blocks handled together
        self.unit_sizes = [sum(self.irreps_in[i][0] * self.irreps_in[i][1].dim for i in g) for g in units]
        paths, out_irreps, w_offset = [], [], 0
        for unit_index, g in enumerate(units):
            l1 = self.irreps_in[g[0]][1].l
            channels = sum(self.irreps_in[i][0] for i in g)
            for j, (_, ir_sh) in enumerate(self.irreps_sh):
                for l3 in range(abs(l1 - ir_sh.l), l1 + ir_sh.l + 1):
                    outs = [o3.Irrep(l3, self.irreps_in[i][1].p * ir_sh.p) for i in g]
                    if not all(ir in wanted for ir in outs):
                        continue
                    cg = o3.wigner_3j(l1, ir_sh.l, l3, dtype=torch.float64) * (2 * l3 + 1) ** 0.5
                    kind, const = _classify(cg, l1, ir_sh.l, l3)
                    name = f"cg_{len(paths)}"
                    # derived from (l1, l2, l3): not part of the saved weights; kept in float64
                    # here so that a model converted to float64 holds it exactly
                    self.register_buffer(name, cg, persistent=False)
                    paths.append((unit_index, j, kind, const, channels, 2 * l1 + 1, 2 * l3 + 1, name))
                    out_irreps.extend((self.irreps_in[i][0], ir) for i, ir in zip(g, outs))
                    w_offset += channels
        self.paths = paths
        self.irreps_out = o3.Irreps(out_irreps)
        self.weight_numel = w_offset
        self.plan = ConvolutionPlan(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Per-edge product: ``x`` (E, dim_in), ``y`` (E, dim_sh), ``weights`` (E, weight_numel) -> (E, dim_out)."""
        n = x.shape[0]
        xs = x.split(self.unit_sizes, dim=1)
        return torch.cat([out.reshape(n, out.shape[1] * out.shape[2]) for out in self._paths(xs, y, weights)], dim=1)

    def convolve(self, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, edge_index: torch.Tensor,
                 weight_index=None) -> torch.Tensor:
        """``sum_j w_ij x_j (x) y_ij`` onto each centre ``i``: node features (N, dim_in) -> (N, dim_out).

        ``weights`` has one row per edge, or with ``weight_index`` (E,) one row per
        group of edges sharing it (the two edges of a pair).

        On CPU (``kernels``) one pass of the kernels over the edges; otherwise the
        same contraction as ``forward`` on gathered features followed by a sum
        over edges, done path by path so that no edge-sized tensor of the full
        output width is ever built (and none is sliced in double backward).
        """
        if self.kernels and x.device.type == "cpu":
            out = conv_kernels.convolve(self.plan, self.plan.to_mu(x), y, weights, edge_index, weight_index)
            return self.plan.from_mu(out)
        if weight_index is not None:
            weights = torch.index_select(weights, 0, weight_index)
        centre, neighbour = edge_index[0], edge_index[1]
        n_nodes = x.shape[0]
        xs = [torch.index_select(part, 0, neighbour) for part in x.split(self.unit_sizes, dim=1)]
        outs = []
        for out in self._paths(xs, y, weights):
            out = out.reshape(out.shape[0], out.shape[1] * out.shape[2])
            agg = torch.zeros((n_nodes, out.shape[1]), dtype=out.dtype, device=out.device)
            outs.append(agg.index_add_(0, centre, out))
        return torch.cat(outs, dim=1)

    def _paths(self, xs, y: torch.Tensor, weights: torch.Tensor):
        """Yield each path's output (E, channels, d3) from per-unit edge features ``xs``."""
        n = y.shape[0]
        ys = y.split([ir.dim for _, ir in self.irreps_sh], dim=1)
        ws = weights.split([p[4] for p in self.paths], dim=1)
        for (unit, j, kind, const, channels, d1, d3, name), w in zip(self.paths, ws):
            xu = xs[unit].reshape(n, channels, d1)
            yj = ys[j]
            if kind == "scale":  # l2 = 0: y is a scalar per edge
                out = xu * (w * (const * yj)).unsqueeze(-1)
            elif kind == "outer":  # l1 = 0
                out = (xu.reshape(n, channels) * w).unsqueeze(-1) * (const * yj).unsqueeze(1)
            elif kind == "dot":  # l1 = l2, l3 = 0
                out = (torch.bmm(xu, yj.unsqueeze(-1)).squeeze(-1) * (const * w)).unsqueeze(-1)
            elif kind == "cross":  # 1 x 1 -> 1: x @ [y]_x, the skew matrix of y
                y0, y1, y2 = (const * yj).unbind(1)
                zero = torch.zeros_like(y0)
                skew = torch.stack([zero, -y2, y1, y2, zero, -y0, -y1, y0, zero], dim=1).view(n, 3, 3)
                out = torch.bmm(xu * w.unsqueeze(-1), skew)
            else:
                t = torch.einsum("eb,abc->eac", yj, getattr(self, name).to(yj.dtype))  # (E, d1, d3)
                out = torch.bmm(xu * w.unsqueeze(-1), t)
            yield out
