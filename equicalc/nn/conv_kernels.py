"""A channel-wise convolution on CPU kernels (numba) that autograd can differentiate to any order.

The convolution of ``ChannelwiseTensorProduct`` is the derivative of one
scalar form, linear in each of four arguments:

    T(x, y, w, g) = sum_e sum_path sum_u w[e, path, u] sum_{m1, m2, m3} C[m1, m2, m3]
                    x[nbr(e), unit, u, m1] y[e, m2] g[centre(e), path, u, m3]

with node features ``x``, edge harmonics ``y``, radial weights ``w`` (one row
per edge, or per pair of edges sharing it) and a node-sized ``g``. The convolution is ``dT/dg`` at ``g``-independent arguments,
and each of its gradients is another partial derivative: ``dT/dx``, ``dT/dy``
and ``dT/dw``, each with the upstream gradient in the slot of ``g``. Because
``T`` is multilinear, the derivative of any partial ``dT/da`` with respect to
an argument ``b``, contracted with a cotangent ``v``, is ``dT/db`` with ``v``
in the slot of ``a``. So the kernels of the four slots give the forward pass,
forces and every higher derivative: ``Partials`` below is one autograd function
whose backward pass calls itself.

Each kernel writes its own rows (no atomics, no per-thread buffers): the ``g``
slot runs over centre atoms (edges sorted by centre), the ``x`` slot over
neighbour atoms (edges listed by neighbour), the ``y`` and ``w`` slots together
over the weight rows (the edges listed by row), so a pair's weight gradient is
summed in place. Features are in the kernels' (m, u) layout (``ConvolutionPlan``).
A backward pass that records no graph (a training step's loss gradient) gets
every cotangent of a call at once and sums the substitutions of each slot in
one pass of the ``_sum`` kernels (``_run_sum``) instead of one pass per
substitution.
A backward pass skips the gradients that the autograd engine will not use (the
edge harmonics' when a loss gradient is taken for the weights alone).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numba import njit, prange

from .kernel_options import KERNEL_OPTIONS

__all__ = ["ConvolutionPlan", "EdgeOrder", "Partials", "convolve"]

SLOTS = ("x", "y", "w", "g")


@njit(**KERNEL_OPTIONS)
def _node_slot(src, y, w, wid, other, listed, ptr, p_ch, p_woff, e_ptr, e_yoff, e_c, e_src, e_dst, out):
    """Row ``i`` of ``out``: over the edges listed for node ``i``, the sum of ``c y w src[other]``. The ``g`` slot
    (the convolution): centres from their neighbours' ``x``; the ``x`` slot: neighbours from their centres' ``g``."""
    for i in prange(ptr.shape[0] - 1):
        orow = out[i]
        for q in range(ptr[i], ptr[i + 1]):
            e = listed[q]
            srow, wrow, yrow = src[other[e]], w[wid[e]], y[e]
            for p in range(p_ch.shape[0]):
                ch = p_ch[p]
                wv = wrow[p_woff[p]:p_woff[p] + ch]
                for k in range(e_ptr[p], e_ptr[p + 1]):
                    coef = e_c[k] * yrow[e_yoff[k]]
                    # slices: the loop index is then known to be in range and non-negative (vectorises)
                    o = orow[e_dst[k]:e_dst[k] + ch]
                    sv = srow[e_src[k]:e_src[k] + ch]
                    for u in range(ch):
                        o[u] += coef * wv[u] * sv[u]


@njit(**KERNEL_OPTIONS)
def _slots_yw(xt, y, w, g, centre, nbr, by_row, row_of, p_ch, p_woff, e_ptr, e_yoff, e_c, e_xoff, e_ooff, out_y, out_w,
              need_y, need_w):
    for r in prange(row_of.shape[0] - 1):  # weight rows; each edge is in one row, so the edge rows are not shared
        wrow = w[r]
        ow = out_w[r] if need_w else out_w[0]
        for q in range(row_of[r], row_of[r + 1]):
            e = by_row[q]
            xrow, grow, yrow = xt[nbr[e]], g[centre[e]], y[e]
            oy = out_y[e] if need_y else out_y[0]
            for p in range(p_ch.shape[0]):
                ch = p_ch[p]
                wv = wrow[p_woff[p]:p_woff[p] + ch]
                o = ow[p_woff[p]:p_woff[p] + ch]
                for k in range(e_ptr[p], e_ptr[p + 1]):
                    coef = e_c[k] * yrow[e_yoff[k]]
                    xv = xrow[e_xoff[k]:e_xoff[k] + ch]
                    gv = grow[e_ooff[k]:e_ooff[k] + ch]
                    acc = 0.0
                    if need_y and need_w:
                        for u in range(ch):
                            t = xv[u] * gv[u]
                            o[u] += coef * t
                            acc += wv[u] * t
                    elif need_w:
                        for u in range(ch):
                            o[u] += coef * xv[u] * gv[u]
                    else:
                        for u in range(ch):
                            acc += wv[u] * xv[u] * gv[u]
                    if need_y:
                        oy[e_yoff[k]] += e_c[k] * acc


@njit(**KERNEL_OPTIONS)
def _node_slot_sum(src, src2, fs, y, y2, fy, w, w2, fw, wid, other, listed, ptr, p_ch, p_woff, e_ptr, e_yoff, e_c,
                   e_src, e_dst, out):
    """``_node_slot`` summed over substitutions: ``c w y src2 fs + c w y2 src fy + c w2 y src fw`` (a factor 0
    with the primary array in place of an absent substitution)."""
    for i in prange(ptr.shape[0] - 1):
        orow = out[i]
        for q in range(ptr[i], ptr[i + 1]):
            e = listed[q]
            srow, s2row, wrow, w2row = src[other[e]], src2[other[e]], w[wid[e]], w2[wid[e]]
            yrow, y2row = y[e], y2[e]
            for p in range(p_ch.shape[0]):
                ch = p_ch[p]
                wv = wrow[p_woff[p]:p_woff[p] + ch]
                wv2 = w2row[p_woff[p]:p_woff[p] + ch]
                for k in range(e_ptr[p], e_ptr[p + 1]):
                    yv = e_c[k] * yrow[e_yoff[k]]
                    a, b, d = fs * yv, fw * yv, fy * e_c[k] * y2row[e_yoff[k]]
                    o = orow[e_dst[k]:e_dst[k] + ch]
                    sv = srow[e_src[k]:e_src[k] + ch]
                    sv2 = s2row[e_src[k]:e_src[k] + ch]
                    for u in range(ch):
                        o[u] += wv[u] * (a * sv2[u] + d * sv[u]) + b * wv2[u] * sv[u]


@njit(**KERNEL_OPTIONS)
def _slots_yw_sum(xt, x2, fx, y, y2, fy, w, w2, fw, g, g2, fg, centre, nbr, by_row, row_of, p_ch, p_woff, e_ptr,
                  e_yoff, e_c, e_xoff, e_ooff, out_y, out_w, need_y, need_w):
    """``_slots_yw`` summed over substitutions (as ``_node_slot_sum``): the ``w`` slot takes those of ``x``, ``y``
    and ``g``, the ``y`` slot those of ``x``, ``w`` and ``g``."""
    for r in prange(row_of.shape[0] - 1):
        wrow, w2row = w[r], w2[r]
        ow = out_w[r] if need_w else out_w[0]
        for q in range(row_of[r], row_of[r + 1]):
            e = by_row[q]
            xrow, x2row, grow, g2row = xt[nbr[e]], x2[nbr[e]], g[centre[e]], g2[centre[e]]
            yrow, y2row = y[e], y2[e]
            oy = out_y[e] if need_y else out_y[0]
            for p in range(p_ch.shape[0]):
                ch = p_ch[p]
                wv = wrow[p_woff[p]:p_woff[p] + ch]
                wv2 = w2row[p_woff[p]:p_woff[p] + ch]
                o = ow[p_woff[p]:p_woff[p] + ch]
                for k in range(e_ptr[p], e_ptr[p + 1]):
                    yv = e_c[k] * yrow[e_yoff[k]]
                    yv2 = fy * e_c[k] * y2row[e_yoff[k]]
                    xv = xrow[e_xoff[k]:e_xoff[k] + ch]
                    xv2 = x2row[e_xoff[k]:e_xoff[k] + ch]
                    gv = grow[e_ooff[k]:e_ooff[k] + ch]
                    gv2 = g2row[e_ooff[k]:e_ooff[k] + ch]
                    acc = 0.0
                    if need_y and need_w:
                        for u in range(ch):
                            xg = fx * xv2[u] * gv[u] + fg * xv[u] * gv2[u]
                            t = xv[u] * gv[u]
                            o[u] += yv * xg + yv2 * t
                            acc += wv[u] * xg + fw * wv2[u] * t
                    elif need_w:
                        for u in range(ch):
                            o[u] += yv * (fx * xv2[u] * gv[u] + fg * xv[u] * gv2[u]) + yv2 * xv[u] * gv[u]
                    else:
                        for u in range(ch):
                            acc += wv[u] * (fx * xv2[u] * gv[u] + fg * xv[u] * gv2[u]) + fw * wv2[u] * xv[u] * gv[u]
                    if need_y:
                        oy[e_yoff[k]] += e_c[k] * acc


class ConvolutionPlan:
    """The index tables the kernels need, derived once from a ``ChannelwiseTensorProduct``."""

    def __init__(self, tp):
        units = []  # offset of every unit in x, in both layouts (the (m, u) layout keeps each unit's block)
        off = 0
        for size in tp.unit_sizes:
            units.append(off)
            off += size
        p_ch, p_woff = [], []
        e_ptr, e_c, e_xoff, e_yoff, e_ooff = [0], [], [], [], []  # per Clebsch-Gordan entry: where it reads/writes
        y_offsets = np.cumsum([0] + [ir.dim for _, ir in tp.irreps_sh])
        w_off = o_off = 0
        unit_dims = {}
        for (unit, j, kind, const, channels, d1, d3, name) in tp.paths:
            cg = getattr(tp, name).double().cpu().numpy()
            unit_dims[unit] = (channels, d1)
            p_ch.append(channels)
            p_woff.append(w_off)
            for m1, m2, m3 in zip(*np.nonzero(np.abs(cg) > 1e-12)):
                e_xoff.append(units[unit] + m1 * channels)
                e_yoff.append(int(y_offsets[j]) + m2)
                e_ooff.append(o_off + m3 * channels)
                e_c.append(cg[m1, m2, m3])
            e_ptr.append(len(e_c))
            w_off += channels
            o_off += channels * d3
        self.unit_offsets = units
        self.unit_dims = [unit_dims.get(k, (tp.unit_sizes[k], 1)) for k in range(len(tp.unit_sizes))]
        self.path_out = [(p[4], p[6]) for p in tp.paths]  # (channels, d3) of each path's output block
        i64 = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731
        self.p_ch, self.p_woff, self.e_ptr = i64(p_ch), i64(p_woff), i64(e_ptr)
        self.e_xoff, self.e_yoff, self.e_ooff = i64(e_xoff), i64(e_yoff), i64(e_ooff)
        self.e_c = np.asarray(e_c, dtype=np.float64)
        self.dim_in = sum(tp.unit_sizes)
        self.dim_out = o_off
        self.dim_y, self.dim_w = int(y_offsets[-1]), w_off

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


@dataclass
class EdgeOrder:
    """How the kernels visit the edges, found once per convolution: sorted by centre (``by_centre``, the
    identity, and ``row_ptr``), with each one's weight row ``wid``; listed by neighbour (``by_nbr``,
    ``nbr_ptr``); and listed by weight row (``by_row``, ``row_of``)."""

    centre: np.ndarray
    nbr: np.ndarray
    wid: np.ndarray
    by_centre: np.ndarray
    row_ptr: np.ndarray
    by_nbr: np.ndarray
    nbr_ptr: np.ndarray
    by_row: np.ndarray
    row_of: np.ndarray

    @staticmethod
    def of(centre: torch.Tensor, nbr: torch.Tensor, wid: torch.Tensor, n_nodes: int, n_rows: int) -> "EdgeOrder":
        """For edges already sorted by ``centre``, with ``n_rows`` weight rows."""
        centre, nbr, wid = (t.contiguous().numpy() for t in (centre, nbr, wid))
        return EdgeOrder(centre, nbr, wid, *_listing(centre, n_nodes), *_listing(nbr, n_nodes),
                         *_listing(wid, n_rows))


@njit(cache=True)  # integers only: its cached code cannot round otherwise (see kernel_options)
def _listing(index, n):
    """The edges listed by ``index`` (a stable counting sort) and where each value's run starts (n + 1)."""
    ptr = np.zeros(n + 1, dtype=np.int64)
    for v in index:
        ptr[v + 1] += 1
    for k in range(n):
        ptr[k + 1] += ptr[k]
    fill = ptr[:-1].copy()
    listed = np.empty(index.shape[0], dtype=np.int64)
    for e in range(index.shape[0]):
        listed[fill[index[e]]] = e
        fill[index[e]] += 1
    return listed, ptr


def _run(wanted, order: EdgeOrder, plan: ConvolutionPlan, x, y, w, g):
    """``dT/ds`` for each slot ``s`` in ``wanted`` (contiguous CPU tensors; a wanted slot's own may be None)."""
    ref = next(t for t in (x, y, w, g) if t is not None)
    dtype = ref.numpy().dtype
    tables = (plan.p_ch, plan.p_woff, plan.e_ptr, plan.e_yoff, plan.e_c.astype(dtype))
    n_nodes, n_edges, wid = order.row_ptr.shape[0] - 1, order.centre.shape[0], order.wid
    out = {}
    if "g" in wanted:
        out["g"] = np.zeros((n_nodes, plan.dim_out), dtype=dtype)
        _node_slot(x.numpy(), y.numpy(), w.numpy(), wid, order.nbr, order.by_centre, order.row_ptr, *tables,
                   plan.e_xoff, plan.e_ooff, out["g"])
    if "x" in wanted:
        out["x"] = np.zeros((n_nodes, plan.dim_in), dtype=dtype)
        _node_slot(g.numpy(), y.numpy(), w.numpy(), wid, order.centre, order.by_nbr, order.nbr_ptr, *tables,
                   plan.e_ooff, plan.e_xoff, out["x"])
    need_y, need_w = "y" in wanted, "w" in wanted
    if need_y or need_w:  # one pass for both, row by row of the weights
        out["y"] = np.zeros((n_edges if need_y else 1, plan.dim_y), dtype=dtype)
        out["w"] = np.zeros((order.row_of.shape[0] - 1 if need_w else 1, plan.dim_w), dtype=dtype)
        _slots_yw(x.numpy(), y.numpy(), w.numpy(), g.numpy(), order.centre, order.nbr, order.by_row, order.row_of,
                  *tables, plan.e_xoff, plan.e_ooff, out["y"], out["w"], need_y, need_w)
    return tuple(torch.from_numpy(out[s]) for s in wanted)


def _run_sum(wanted, order: EdgeOrder, plan: ConvolutionPlan, args, subs):
    """For each slot ``b`` in ``wanted``: the sum over the substitutions ``subs`` (slot -> array) in slots other
    than ``b`` of ``dT/db`` at ``args`` with that one array substituted; one pass of the kernels per slot
    (``_run`` would take one per substitution). No autograd: for a backward pass that records no graph."""
    x, y, w, g = (t.contiguous().numpy() for t in args)  # all four are given (Partials.backward checks)
    dtype = x.dtype
    tables = (plan.p_ch, plan.p_woff, plan.e_ptr, plan.e_yoff, plan.e_c.astype(dtype))
    n_nodes, n_edges = order.row_ptr.shape[0] - 1, order.centre.shape[0]

    def sub(slot, primary, target):  # (array, factor): the substitution, or the primary array with factor 0
        v = subs.get(slot) if slot != target else None
        return (primary, 0.0) if v is None else (v.contiguous().numpy(), 1.0)

    out = {}
    if "g" in wanted:
        out["g"] = np.zeros((n_nodes, plan.dim_out), dtype=dtype)
        _node_slot_sum(x, *sub("x", x, "g"), y, *sub("y", y, "g"), w, *sub("w", w, "g"), order.wid, order.nbr,
                       order.by_centre, order.row_ptr, *tables, plan.e_xoff, plan.e_ooff, out["g"])
    if "x" in wanted:
        out["x"] = np.zeros((n_nodes, plan.dim_in), dtype=dtype)
        _node_slot_sum(g, *sub("g", g, "x"), y, *sub("y", y, "x"), w, *sub("w", w, "x"), order.wid, order.centre,
                       order.by_nbr, order.nbr_ptr, *tables, plan.e_ooff, plan.e_xoff, out["x"])
    need_y, need_w = "y" in wanted, "w" in wanted
    if need_y or need_w:
        out_y = np.zeros((n_edges if need_y else 1, plan.dim_y), dtype=dtype)
        out_w = np.zeros((order.row_of.shape[0] - 1 if need_w else 1, plan.dim_w), dtype=dtype)
        # a substitution in y reaches the w slot only, one in w the y slot only: the kernel applies them so
        _slots_yw_sum(x, *sub("x", x, None), y, *sub("y", y, None), w, *sub("w", w, None), g, *sub("g", g, None),
                      order.centre, order.nbr, order.by_row, order.row_of, *tables, plan.e_xoff, plan.e_ooff,
                      out_y, out_w, need_y, need_w)
        out["y"], out["w"] = out_y, out_w
    return tuple(torch.from_numpy(out[s]) for s in wanted)


def _asked_for(t: torch.Tensor) -> bool:
    """Whether the running backward pass will use a gradient for ``t``: a loss gradient taken with respect to
    the parameters alone (``backward(inputs=...)``) needs none for the edge harmonics, whose gradient only
    reaches the positions. True whenever PyTorch cannot tell."""
    try:
        return torch._C._will_engine_execute_node(torch.autograd.graph.get_gradient_edge(t).node)
    except (AttributeError, RuntimeError):
        return True


class Partials(torch.autograd.Function):
    """``dT/ds`` for each slot ``s`` in ``wanted``, at the four arguments ``x, y, w, g`` (a wanted slot's own
    argument is not used and may be None); differentiable to any order.

    The backward pass of output ``dT/ds`` with cotangent ``v`` gives every other
    argument ``b`` the gradient ``dT/db`` with ``v`` in the slot of ``s``: one
    more call of this function (``T`` is linear in each argument).
    """

    @staticmethod
    def forward(ctx, wanted, order, plan, x, y, w, g):
        args = [None if t is None else t.contiguous() for t in (x, y, w, g)]
        ctx.wanted, ctx.order, ctx.plan = wanted, order, plan
        ctx.save_for_backward(*args)
        ctx.set_materialize_grads(False)
        return _run(wanted, order, plan, *args)

    @staticmethod
    def backward(ctx, *cotangents):
        args = list(ctx.saved_tensors)
        grads = [None] * 4
        asked = [ctx.needs_input_grad[3 + k] and _asked_for(t) for k, t in enumerate(args)]
        subs = {s: v for s, v in zip(ctx.wanted, cotangents) if v is not None}
        if not torch.is_grad_enabled() and len(subs) > 1 and all(t is not None for t in args):
            # nothing differentiates this pass: one sum over the substitutions per slot
            needed = tuple(b for k, b in enumerate(SLOTS) if asked[k] and any(s != b for s in subs))
            for b, grad in zip(needed, _run_sum(needed, ctx.order, ctx.plan, args, subs)):
                grads[SLOTS.index(b)] = grad
            return (None, None, None, *grads)
        for s, v in zip(ctx.wanted, cotangents):
            own = SLOTS.index(s)
            needed = tuple(b for k, b in enumerate(SLOTS) if k != own and asked[k])
            if v is None or not needed:
                continue
            call = list(args)
            call[own] = v
            for b, grad in zip(needed, Partials.apply(needed, ctx.order, ctx.plan, *call)):
                k = SLOTS.index(b)
                grads[k] = grad if grads[k] is None else grads[k] + grad
        return (None, None, None, *grads)


_last_order: list = []  # [(edge_index, weight_index, their versions, sizes), sort, EdgeOrder] of the last call


def _edge_order(edge_index: torch.Tensor, weight_index, n_nodes: int, n_rows: int):
    """The permutation sorting the edges by centre (None if sorted) and their ``EdgeOrder``; the layers of
    one forward pass share their edges, so the last result is kept while the same edge tensors come back."""
    key = (edge_index, weight_index, edge_index._version, None if weight_index is None else weight_index._version,
           n_nodes, n_rows)
    if _last_order and all(a is b if isinstance(a, torch.Tensor) else a == b for a, b in zip(_last_order[0], key)):
        return _last_order[1], _last_order[2]
    centre, nbr = edge_index[0], edge_index[1]
    wid = torch.arange(centre.shape[0]) if weight_index is None else weight_index
    sort = None
    if centre.numel() > 1 and bool((centre[1:] < centre[:-1]).any()):
        sort = torch.argsort(centre, stable=True)
        centre, nbr, wid = centre[sort], nbr[sort], wid[sort]
    order = EdgeOrder.of(centre, nbr, wid, n_nodes, n_rows)
    _last_order[:] = [key, sort, order]
    return sort, order


def convolve(plan: ConvolutionPlan, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, edge_index: torch.Tensor,
             weight_index=None) -> torch.Tensor:
    """``sum_j w_ij x_j (x) y_ij`` onto each centre ``i`` (CPU tensors), in the kernels' (m, u) layout.

    ``x`` (N, dim_in), ``y`` (E, dim_y), ``w`` one row per edge, or with
    ``weight_index`` (E,) one row per group of edges sharing it; -> (N, dim_out).
    """
    sort, order = _edge_order(edge_index, weight_index, x.shape[0], w.shape[0])
    out, = Partials.apply(("g",), order, plan, x, y if sort is None else y[sort], w, None)
    return out
