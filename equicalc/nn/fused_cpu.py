"""Fused CPU kernels (numba) for the channel-wise convolution, applied to a model by ``fuse``.

    model = fuse(load_model("model.pth"))     # inference on CPU; EquiCalc does this by default

``fuse(model)`` replaces every ``ChannelwiseTensorProduct`` of ``model`` by a
``FusedChannelwiseTensorProduct``: the same contraction and the same weights,
whose ``convolve`` computes, for every centre atom ``i``,

    out[i, path, u, m3] = sum_{edges e = (i, j)} w[e, path, u] sum_{m1, m2} C[m1, m2, m3] x[j, unit, u, m1] y[e, m2]

in one pass over the edges (sorted by centre), without building any edge-sized
feature tensor; its backward pass gives the gradients with respect to ``x``, ``y``
and ``w`` in a second pass. Features are handled in an (m, u) layout inside the
kernels so that the innermost loop runs over contiguous channels.

The backward pass is not itself differentiable (forces are, their derivatives
are not), so a fused model is for inference: training refuses it
(``compute_properties(..., training=True)`` raises). On a GPU the fused module
falls back to the PyTorch path. numba is a required dependency of equicalc.
"""
from __future__ import annotations

import copy

import numba
import numpy as np
import torch
from numba import njit, prange

from .tensor_product import ChannelwiseTensorProduct

__all__ = ["fuse", "FusedChannelwiseTensorProduct", "ConvolutionPlan", "fused_convolve"]


@njit(parallel=True, fastmath=True, cache=True)
def _forward(xt, y, w, wid, nbr, row_ptr, p_unit, p_ch, p_yoff, p_woff, p_ooff, u_xoff, e_ptr, e_m1, e_m2, e_m3, e_c,
             out):
    n_nodes = row_ptr.shape[0] - 1
    n_paths = p_unit.shape[0]
    for i in prange(n_nodes):
        orow = out[i]
        for e in range(row_ptr[i], row_ptr[i + 1]):
            xrow = xt[nbr[e]]
            wrow = w[wid[e]]
            yrow = y[e]
            for p in range(n_paths):
                ch = p_ch[p]
                xo = u_xoff[p_unit[p]]
                wo = p_woff[p]
                oo = p_ooff[p]
                for k in range(e_ptr[p], e_ptr[p + 1]):
                    coef = e_c[k] * yrow[p_yoff[p] + e_m2[k]]
                    xs = xo + e_m1[k] * ch
                    os_ = oo + e_m3[k] * ch
                    # slices: the loop index is then known to be in range and non-negative (vectorises)
                    o = orow[os_:os_ + ch]
                    wv = wrow[wo:wo + ch]
                    xv = xrow[xs:xs + ch]
                    for u in range(ch):
                        o[u] += coef * wv[u] * xv[u]

@njit(parallel=True, fastmath=True, cache=True)
def _backward(xt, y, w, wid, g, nbr, row_ptr, p_unit, p_ch, p_yoff, p_woff, p_ooff, u_xoff, e_ptr, e_m1, e_m2, e_m3,
              e_c, grad_xt, grad_y, grad_w, need_x, need_y, need_w):
    n_nodes = row_ptr.shape[0] - 1
    n_paths = p_unit.shape[0]
    for i in prange(n_nodes):
        t = numba.get_thread_id()
        grow = g[i]
        for e in range(row_ptr[i], row_ptr[i + 1]):
            j = nbr[e]
            xrow = xt[j]
            wrow = w[wid[e]]
            yrow = y[e]
            gw = grad_w[e] if need_w else grad_w[0]
            gx = grad_xt[t, j] if need_x else grad_xt[0, 0]
            gy = grad_y[e] if need_y else grad_y[0]
            for p in range(n_paths):
                ch = p_ch[p]
                xo = u_xoff[p_unit[p]]
                wo = p_woff[p]
                oo = p_ooff[p]
                yo = p_yoff[p]
                for k in range(e_ptr[p], e_ptr[p + 1]):
                    cy = e_c[k] * yrow[yo + e_m2[k]]
                    xs = xo + e_m1[k] * ch
                    os_ = oo + e_m3[k] * ch
                    gv = grow[os_:os_ + ch]
                    xv = xrow[xs:xs + ch]
                    wv = wrow[wo:wo + ch]
                    gwv = gw[wo:wo + ch]
                    gxv = gx[xs:xs + ch]
                    acc = 0.0
                    if need_w and need_x:  # the common case, in one pass over the channels
                        for u in range(ch):
                            gxw = cy * gv[u]
                            gwv[u] += gxw * xv[u]
                            gxv[u] += gxw * wv[u]
                            acc += wv[u] * xv[u] * gv[u]
                    else:
                        for u in range(ch):
                            if need_w:
                                gwv[u] += cy * xv[u] * gv[u]
                            if need_x:
                                gxv[u] += cy * wv[u] * gv[u]
                            acc += wv[u] * xv[u] * gv[u]
                    if need_y:
                        gy[yo + e_m2[k]] += e_c[k] * acc


class ConvolutionPlan:
    """The index tables the kernels need, derived once from a ``ChannelwiseTensorProduct``."""

    def __init__(self, tp):
        units = []  # (x offset in e3nn layout, channels, d1) of every unit
        off = 0
        for size in tp.unit_sizes:
            units.append(off)
            off += size
        p_unit, p_ch, p_yoff, p_woff, p_ooff = [], [], [], [], []
        e_ptr, e_m1, e_m2, e_m3, e_c = [0], [], [], [], []
        y_offsets = np.cumsum([0] + [ir.dim for _, ir in tp.irreps_sh])
        w_off = o_off = 0
        unit_dims = {}
        for (unit, j, kind, const, channels, d1, d3, name) in tp.paths:
            cg = getattr(tp, name).double().cpu().numpy()
            unit_dims[unit] = (channels, d1)
            p_unit.append(unit)
            p_ch.append(channels)
            p_yoff.append(int(y_offsets[j]))
            p_woff.append(w_off)
            p_ooff.append(o_off)
            for m1, m2, m3 in zip(*np.nonzero(np.abs(cg) > 1e-12)):
                e_m1.append(m1)
                e_m2.append(m2)
                e_m3.append(m3)
                e_c.append(cg[m1, m2, m3])
            e_ptr.append(len(e_c))
            w_off += channels
            o_off += channels * d3
        self.unit_offsets = units
        self.unit_dims = [unit_dims.get(k, (tp.unit_sizes[k], 1)) for k in range(len(tp.unit_sizes))]
        self.path_out = [(p[4], p[6]) for p in tp.paths]  # (channels, d3) of each path's output block
        i64 = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731
        self.p_unit, self.p_ch, self.p_yoff = i64(p_unit), i64(p_ch), i64(p_yoff)
        self.p_woff, self.p_ooff = i64(p_woff), i64(p_ooff)
        self.e_ptr, self.e_m1, self.e_m2, self.e_m3 = i64(e_ptr), i64(e_m1), i64(e_m2), i64(e_m3)
        self.e_c = np.asarray(e_c, dtype=np.float64)
        self.dim_in = sum(tp.unit_sizes)
        self.dim_out = o_off
        # x in (m, u) layout: unit k's block starts at the same offset, with channels contiguous
        self.u_xoff = i64(units)

    def to_mu(self, x: torch.Tensor) -> torch.Tensor:
        """Node features from e3nn's (u, m) layout to the kernels' (m, u) layout, unit by unit."""
        parts = []
        for off, (ch, d1) in zip(self.unit_offsets, self.unit_dims):
            parts.append(x[:, off:off + ch * d1].reshape(-1, ch, d1).transpose(1, 2).reshape(-1, ch * d1))
        return torch.cat(parts, dim=1)

    def from_mu(self, out: torch.Tensor) -> torch.Tensor:
        """Path outputs from the (m, u) layout back to e3nn's (u, m) layout."""
        parts, off = [], 0
        for ch, d3 in self.path_out:
            parts.append(out[:, off:off + ch * d3].reshape(-1, d3, ch).transpose(1, 2).reshape(-1, ch * d3))
            off += ch * d3
        return torch.cat(parts, dim=1)


def _csr(edge_index: torch.Tensor, n_nodes: int):
    """Edges ordered by centre (a permutation, or None if already sorted) and the row pointer."""
    centre = edge_index[0]
    order = None
    if centre.numel() > 1 and bool((centre[1:] < centre[:-1]).any()):
        order = torch.argsort(centre, stable=True)
        centre = centre[order]
    counts = torch.bincount(centre, minlength=n_nodes)
    row_ptr = torch.zeros(n_nodes + 1, dtype=torch.long)
    row_ptr[1:] = torch.cumsum(counts, 0)
    return order, row_ptr


class _FusedConvolution(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xt, y, w, wid, nbr, row_ptr, plan):
        xt_c, y_c, w_c = xt.contiguous(), y.contiguous(), w.contiguous()
        out = np.zeros((row_ptr.shape[0] - 1, plan.dim_out), dtype=xt_c.numpy().dtype)
        _forward(xt_c.numpy(), y_c.numpy(), w_c.numpy(), wid.numpy(), nbr.numpy(), row_ptr.numpy(), plan.p_unit, plan.p_ch,
                 plan.p_yoff, plan.p_woff, plan.p_ooff, plan.u_xoff, plan.e_ptr, plan.e_m1, plan.e_m2, plan.e_m3,
                 plan.e_c.astype(out.dtype), out)
        ctx.save_for_backward(xt_c, y_c, w_c, wid, nbr, row_ptr)
        ctx.plan = plan
        return torch.from_numpy(out)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        xt, y, w, wid, nbr, row_ptr = ctx.saved_tensors
        plan = ctx.plan
        need_x, need_y, need_w = ctx.needs_input_grad[:3]
        g = grad_out.contiguous().numpy()
        dtype = g.dtype
        threads = numba.get_num_threads()
        grad_xt = np.zeros((threads if need_x else 1, xt.shape[0] if need_x else 1, xt.shape[1]), dtype=dtype)
        grad_y = np.zeros(y.shape if need_y else (1, y.shape[1]), dtype=dtype)
        grad_w = np.zeros((wid.shape[0], w.shape[1]) if need_w else (1, w.shape[1]), dtype=dtype)  # per edge
        _backward(xt.numpy(), y.numpy(), w.numpy(), wid.numpy(), g, nbr.numpy(), row_ptr.numpy(), plan.p_unit, plan.p_ch,
                  plan.p_yoff, plan.p_woff, plan.p_ooff, plan.u_xoff, plan.e_ptr, plan.e_m1, plan.e_m2, plan.e_m3,
                  plan.e_c.astype(dtype), grad_xt, grad_y, grad_w, need_x, need_y, need_w)
        return (torch.from_numpy(grad_xt.sum(0)) if need_x else None,
                torch.from_numpy(grad_y) if need_y else None,
                torch.zeros_like(w).index_add_(0, wid, torch.from_numpy(grad_w)) if need_w else None,
                None, None, None, None)


def fused_convolve(plan: ConvolutionPlan, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
                   edge_index: torch.Tensor, weight_index=None, layouts: bool = True) -> torch.Tensor:
    """``ChannelwiseTensorProduct.convolve`` with the fused kernels (CPU tensors only).

    ``weight_index`` (E,) picks each edge's row of ``w`` (rows shared by the two
    edges of a pair); None means one row per edge. ``layouts=False``: ``x`` comes
    and the result goes in the kernels' (m, u) layout.
    """
    n_nodes = x.shape[0]
    order, row_ptr = _csr(edge_index, n_nodes)
    nbr = edge_index[1]
    wid = torch.arange(y.shape[0]) if weight_index is None else weight_index
    if order is not None:
        nbr, y, wid = nbr[order], y[order], wid[order]
    if not layouts:
        return _FusedConvolution.apply(x, y, w, wid.contiguous(), nbr.contiguous(), row_ptr, plan)
    out = _FusedConvolution.apply(plan.to_mu(x), y, w, wid.contiguous(), nbr.contiguous(), row_ptr, plan)
    return plan.from_mu(out)


class FusedChannelwiseTensorProduct(ChannelwiseTensorProduct):
    """A ``ChannelwiseTensorProduct`` whose ``convolve`` runs the fused kernels on CPU tensors (inference only)."""

    fused = True

    def __init__(self, tp: ChannelwiseTensorProduct):
        super().__init__(tp.irreps_in, tp.irreps_sh, tp.irreps_target)
        self.plan = ConvolutionPlan(self)
        self.layouts = None  # (to_mu, from_mu) once a neighbour takes over the layout changes

    def take_layouts(self):
        """The kernels' layout changes as column permutations ``(to_mu, from_mu)``: ``to_mu(x) = x[:, to_mu]``
        and ``from_mu(out) = out[:, from_mu]``. From then on ``convolve`` takes and gives the kernels' own
        layout, and the caller applies the permutations (folded into the neighbouring linear maps)."""
        if self.layouts is None:
            to_mu = self.plan.to_mu(torch.arange(self.plan.dim_in, dtype=torch.float64)[None]).long()[0]
            from_mu = self.plan.from_mu(torch.arange(self.plan.dim_out, dtype=torch.float64)[None]).long()[0]
            self.layouts = (to_mu, from_mu)
        return self.layouts

    def convolve(self, x, y, weights, edge_index, weight_index=None):
        if x.device.type != "cpu":
            if self.layouts is None:
                return super().convolve(x, y, weights, edge_index, weight_index)
            to_mu, from_mu = (torch.argsort(p).to(x.device) for p in self.layouts)
            return super().convolve(x[:, to_mu], y, weights, edge_index, weight_index)[:, from_mu]
        if self.layouts is None:
            return fused_convolve(self.plan, x, y, weights, edge_index, weight_index)
        return fused_convolve(self.plan, x, y, weights, edge_index, weight_index, layouts=False)


def fuse(model, inplace: bool = False):
    """``model`` with its channel-wise convolutions on the fused CPU kernels (for inference).

    The weights and results are the same (to float rounding); only the
    convolution's implementation changes. Models without such convolutions
    (Allegro) come back unchanged. ``inplace=False`` (default) leaves ``model`` as it was.
    """
    if not inplace:
        model = copy.deepcopy(model)
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is ChannelwiseTensorProduct:
                fused = FusedChannelwiseTensorProduct(child)
                device = next(iter(child.buffers()), torch.empty(0)).device
                setattr(module, name, fused.to(device))
    return model
