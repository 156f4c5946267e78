"""Channel-wise ("uvu") tensor product of node features with edge spherical harmonics.

For every path ``(l1, p1) x (l2, p2) -> (l3, p3)`` and channel ``u``:

    out[e, u, m3] = w[e, u, path] * sqrt(2 l3 + 1) * sum_{m1, m2} C[m1, m2, m3] x[e, u, m1] y[e, m2]

with ``C`` e3nn's real Wigner 3j symbols, so components stay of unit variance.
Each path gives its own output block (a later linear layer mixes them). The
contraction is written per path as one small batched matmul against a per-edge
(d1, d3) matrix built from the harmonics, which avoids materialising the
(E, U, d1, d2) outer product a generic tensor product would.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
from e3nn import o3
from torch import nn

__all__ = ["ChannelwiseTensorProduct"]


class ChannelwiseTensorProduct(nn.Module):
    """Per-edge weighted "uvu" tensor product ``x (x) Y`` restricted to ``irreps_target``.

    Args:
        irreps_in: irreps of the node features ``x``.
        irreps_sh: irreps of the edge spherical harmonics ``y`` (multiplicity 1 each).
        irreps_target: irreps the output may contain (multiplicities ignored).

    Attributes:
        irreps_out: one block per path, in path order (multiplicity of its input block).
        weight_numel: number of per-edge weights (sum of input multiplicities over paths).
    """

    def __init__(self, irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_target: o3.Irreps):
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_sh = o3.Irreps(irreps_sh)
        wanted = {ir for _, ir in o3.Irreps(irreps_target)}
        in_slices = self.irreps_in.slices()
        sh_slices = self.irreps_sh.slices()
        paths: List[Tuple] = []
        out_irreps = []
        w_offset = 0
        for i, (mul, ir_in) in enumerate(self.irreps_in):
            for j, (mul_sh, ir_sh) in enumerate(self.irreps_sh):
                if mul_sh != 1:
                    raise ValueError("irreps_sh must have multiplicity 1")
                for ir_out in ir_in * ir_sh:
                    if ir_out not in wanted:
                        continue
                    cg = o3.wigner_3j(ir_in.l, ir_sh.l, ir_out.l) * (2 * ir_out.l + 1) ** 0.5
                    name = f"cg_{len(paths)}"
                    self.register_buffer(name, cg.to(torch.get_default_dtype()))
                    paths.append((i, j, ir_in.dim, ir_out.dim, mul, w_offset, name))
                    out_irreps.append((mul, ir_out))
                    w_offset += mul
        self.paths = paths
        self.in_slices = in_slices
        self.sh_slices = sh_slices
        self.irreps_out = o3.Irreps(out_irreps)
        self.weight_numel = w_offset

    def forward(self, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``x`` (E, dim_in), ``y`` (E, dim_sh), ``weights`` (E, weight_numel) -> (E, dim_out)."""
        n_edges = x.shape[0]
        # split once (a sliced view per path would cost a zero-filled gradient per path)
        xs = [xb.reshape(n_edges, mul, ir.dim) for xb, (mul, ir) in zip(x.split([s.stop - s.start for s in self.in_slices], dim=1), self.irreps_in)]
        ys = y.split([ir.dim for _, ir in self.irreps_sh], dim=1)
        ws = weights.split([p[4] for p in self.paths], dim=1)
        outs = []
        for (i, j, d1, d3, mul, _, name), w in zip(self.paths, ws):
            cg = getattr(self, name)  # (d1, d2, d3)
            if d1 == 1:
                t = ys[j] @ cg[0]  # (E, d3)
                out = (xs[i] * w.unsqueeze(-1)) * t.unsqueeze(1)
            else:
                t = torch.einsum("eb,abc->eac", ys[j], cg)  # (E, d1, d3)
                out = torch.bmm(xs[i] * w.unsqueeze(-1), t)  # (E, U, d3)
            outs.append(out.reshape(n_edges, mul * d3))
        return torch.cat(outs, dim=1)
