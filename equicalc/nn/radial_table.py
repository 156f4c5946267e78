"""A NequIP model's radial networks tabulated against the pair distance (inference only).

Each layer's radial network maps the Bessel/envelope embedding of a distance
``r`` to that pair's tensor-product weights: a smooth function of one variable,
the same for every pair. ``RadialTable`` evaluates all layers' networks once, on
a grid ``r_k = k h`` (0 <= r_k <= r_max), with their first and second
derivatives (forward-mode autograd, in float64), and interpolates between grid
points with quintic Hermite polynomials:

    w(r_k + t h) = b0(t) w_k + b1(t) h w'_k + b2(t) h^2 w''_k
                 + b3(t) w_k+1 + b4(t) h w'_k+1 + b5(t) h^2 w''_k+1,   0 <= t < 1

(``hermite_basis``), which match value, slope and curvature at both ends, so the
weights and their derivative (the forces) are continuous everywhere. The
interpolation error falls as h^6; at the float64 default ``h = 0.0025 Å``,
relative to the largest weight, it is about 1e-14 beyond 2 Å, 1e-13 between 1
and 2 Å and 1e-11 below 1 Å (the networks vary fastest at short range; measured
on the shipped ``cuzr`` model and on a freshly initialised one). A float32
table has ``h = 0.01 Å``: its interpolation error (about 1e-9 of the largest
weight beyond 1 Å, 1e-7 below) is at or below float32's rounding, and a table of
a quarter of the size stays in cache (a third less time per interpolation than
at 0.0025 Å). The envelope
makes ``w`` vanish with two derivatives at ``r_max``, a grid point, and the
table gives exactly 0 beyond it.

One gather and a weighted sum per pair replace the networks' matrix products
(for the reference model, 45 000 multiply-adds per pair forward and as many
backward): on CPU a numba kernel per direction, elsewhere PyTorch operations.
The table is derived from the weights, so a model must not be trained through
it (``fused``: ``compute_properties`` refuses).
"""
from __future__ import annotations

import copy
import math
from typing import List, Optional

import numpy as np
import torch
from numba import njit, prange
from torch import nn

from .kernel_options import KERNEL_OPTIONS

__all__ = ["RadialTable", "hermite_basis"]


def hermite_basis(t):
    """The six quintic Hermite basis polynomials at ``t`` (tensor or float), in the order of ``RadialTable``'s rows:
    value, slope and curvature at the left node, then value, slope and curvature at the right node."""
    t2 = t * t
    t3 = t2 * t
    t4 = t3 * t
    t5 = t4 * t
    return (1 - 10 * t3 + 15 * t4 - 6 * t5, t - 6 * t3 + 8 * t4 - 3 * t5, 0.5 * (t2 - 3 * t3 + 3 * t4 - t5),
            10 * t3 - 15 * t4 + 6 * t5, -4 * t3 + 7 * t4 - 3 * t5, 0.5 * (t3 - 2 * t4 + t5))


@njit(**KERNEL_OPTIONS)
def _interpolate(r, order, table, inv_h, out):
    last = table.shape[0] - 1
    for q in prange(r.shape[0]):
        p = order[q]
        x = r[p] * inv_h
        k = int(x)
        o = out[p]
        if k >= last:
            o[:] = 0.0
            continue
        t = x - k
        t2 = t * t
        t3 = t2 * t
        t4 = t3 * t
        t5 = t4 * t
        b0 = 1 - 10 * t3 + 15 * t4 - 6 * t5
        b1 = t - 6 * t3 + 8 * t4 - 3 * t5
        b2 = 0.5 * (t2 - 3 * t3 + 3 * t4 - t5)
        b3 = 10 * t3 - 15 * t4 + 6 * t5
        b4 = -4 * t3 + 7 * t4 - 3 * t5
        b5 = 0.5 * (t3 - 2 * t4 + t5)
        a0, a1, a2 = table[k, 0], table[k, 1], table[k, 2]
        c0, c1, c2 = table[k + 1, 0], table[k + 1, 1], table[k + 1, 2]
        for c in range(o.shape[0]):
            o[c] = b0 * a0[c] + b1 * a1[c] + b2 * a2[c] + b3 * c0[c] + b4 * c1[c] + b5 * c2[c]


@njit(**KERNEL_OPTIONS)
def _interpolate_backward(r, order, table, inv_h, grad, grad_r):
    last = table.shape[0] - 1
    for q in prange(r.shape[0]):
        p = order[q]
        x = r[p] * inv_h
        k = int(x)
        if k >= last:
            continue
        t = x - k
        t2 = t * t
        t3 = t2 * t
        t4 = t3 * t
        b0 = -30 * t2 + 60 * t3 - 30 * t4
        b1 = 1 - 18 * t2 + 32 * t3 - 15 * t4
        b2 = 0.5 * (2 * t - 9 * t2 + 12 * t3 - 5 * t4)
        b3 = 30 * t2 - 60 * t3 + 30 * t4
        b4 = -12 * t2 + 28 * t3 - 15 * t4
        b5 = 0.5 * (3 * t2 - 8 * t3 + 5 * t4)
        a0, a1, a2 = table[k, 0], table[k, 1], table[k, 2]
        c0, c1, c2 = table[k + 1, 0], table[k + 1, 1], table[k + 1, 2]
        g = grad[p]
        acc = 0.0
        for c in range(g.shape[0]):
            acc += g[c] * (b0 * a0[c] + b1 * a1[c] + b2 * a2[c] + b3 * c0[c] + b4 * c1[c] + b5 * c2[c])
        grad_r[p] += acc * inv_h


class _Interpolate(torch.autograd.Function):
    """The numba kernels (CPU): distances (P,) -> each layer's weights (P, W_layer), and back to the distances'
    gradient. One contiguous array per layer, so that no split (or, backward, no concatenation) of a pair-sized
    array is needed.

    Pairs are visited in order of distance, so that neighbouring threads' reads
    of the table stay in cache."""

    @staticmethod
    def forward(ctx, r, inv_h, *tables):
        r_c = r.contiguous()
        order = torch.argsort(r_c.detach())
        outs = []
        for table in tables:
            out = np.empty((r_c.shape[0], table.shape[2]), dtype=table.numpy().dtype)
            _interpolate(r_c.detach().numpy(), order.numpy(), table.numpy(), inv_h, out)
            outs.append(torch.from_numpy(out))
        ctx.save_for_backward(r_c, order)
        ctx.tables, ctx.inv_h = tables, inv_h
        ctx.set_materialize_grads(False)
        return tuple(outs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        r, order = ctx.saved_tensors
        grad_r = np.zeros(r.shape[0], dtype=r.numpy().dtype)
        for table, grad in zip(ctx.tables, grads):
            if grad is not None:
                _interpolate_backward(r.numpy(), order.numpy(), table.numpy(), ctx.inv_h, grad.contiguous().numpy(),
                                      grad_r)
        return (torch.from_numpy(grad_r), None) + (None,) * len(ctx.tables)


def _interpolate_torch(r: torch.Tensor, table: torch.Tensor, inv_h: float) -> torch.Tensor:
    """The same interpolation as the kernels, in PyTorch operations (any device, differentiable)."""
    x = r * inv_h
    k = torch.clamp(x.detach().floor().long(), max=table.shape[0] - 2)
    inside = (x < table.shape[0] - 1).to(table.dtype).unsqueeze(1)
    t = (x - k.to(x.dtype)).unsqueeze(1)
    left, right = table[k], table[k + 1]
    b = hermite_basis(t)
    out = b[0] * left[:, 0] + b[1] * left[:, 1] + b[2] * left[:, 2] + b[3] * right[:, 0] + b[4] * right[:, 1] \
        + b[5] * right[:, 2]
    return out * inside


def _silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU as ``x / (1 + exp(-x))``: PyTorch's own has no second forward-mode derivative."""
    return x / (1 + torch.exp(-x))


class RadialTable(nn.Module):
    """Every layer's radial weights of a NequIP model as one quintic Hermite table in the pair distance.

    ``table(r)`` (distances in Å, shape (P,)) gives the list of the layers' weights,
    each (P, weight_numel of that layer), equal to ``layer.radial_net(model.radial(r))``
    to the interpolation error (see the module docstring). Build it after the
    model has its final dtype and device; the table is computed in float64 and
    stored in the model's dtype. Not part of the state dict.

    Args:
        model: a ``NequIP`` model.
        spacing: grid spacing h, Å, rounded down so that ``r_max`` is a grid point; None: 0.01 Å for a
            float32 model, 0.0025 Å otherwise.
    """

    fused = True  # derived from the weights: compute_properties refuses to train through it

    def __init__(self, model, spacing: Optional[float] = None):
        super().__init__()
        if spacing is None:
            spacing = 0.01 if next(model.parameters()).dtype == torch.float32 else 0.0025
        if not spacing > 0:
            raise ValueError(f"RadialTable: spacing must be a positive distance in Å, got {spacing!r}")
        r_max = float(model.r_max)
        intervals = max(1, math.ceil(r_max / spacing))
        self.spacing = r_max / intervals
        self.inv_h = intervals / r_max
        self.sizes: List[int] = [layer.tp.weight_numel for layer in model.layers]
        param = next(model.parameters())
        table = self._build(model, intervals).to(param.dtype)
        for k, part in enumerate(torch.split(table, self.sizes, dim=2)):  # one contiguous table per layer
            self.register_buffer(f"table_{k}", part.contiguous(), persistent=False)

    @property
    def tables(self) -> List[torch.Tensor]:
        """Each layer's table, (intervals + 1, 3, weight_numel of that layer)."""
        return [getattr(self, f"table_{k}") for k in range(len(self.sizes))]

    def _build(self, model, intervals: int) -> torch.Tensor:
        """(intervals + 1, 3, W): value, h x slope and h^2 x curvature of all layers' weights at each grid point."""
        exact = copy.deepcopy(model).to(torch.float64)
        for module in exact.modules():  # SiLU in elementary operations: forward-mode autograd twice
            if getattr(module, "f", None) is torch.nn.functional.silu:
                module.f = _silu
        layers = exact.layers

        def weights(r):
            emb = exact.radial(r)
            return torch.cat([layer.radial_net(emb) for layer in layers], dim=1)

        def slope(r):
            return torch.func.jvp(weights, (r,), (torch.ones_like(r),))[1]

        device = next(model.parameters()).device
        r = torch.arange(intervals + 1, dtype=torch.float64, device=device) * self.spacing
        r[0] = 1e-3 * self.spacing  # the basis sin(x)/x is finite at 0 but evaluates to 0/0 there
        with torch.no_grad():
            value, first = torch.func.jvp(weights, (r,), (torch.ones_like(r),))
            second = torch.func.jvp(slope, (r,), (torch.ones_like(r),))[1]
        h = self.spacing
        return torch.stack([value, h * first, h * h * second], dim=1).contiguous()

    def forward(self, r: torch.Tensor) -> List[torch.Tensor]:
        tables = self.tables
        r = r.to(tables[0].dtype)
        if r.device.type == "cpu":
            return list(_Interpolate.apply(r, self.inv_h, *tables))
        return [_interpolate_torch(r, table, self.inv_h) for table in tables]
