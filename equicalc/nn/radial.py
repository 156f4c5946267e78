"""Radial basis and smooth cutoff envelope shared by the architectures.

Bessel basis ``B_n(r) = sin(n pi u) / u`` with ``u = r / r_c`` (n = 1..N) times
the polynomial envelope ``f_p(u)``. This is NequIP's ``(2 / r_c) sin(n pi r / r_c) / r``
times ``r_c^2 / 2``: dimensionless and of order one at typical neighbour
distances (NequIP's form is about 0.05 there, which leaves the radial networks
a signal some ten times weaker than the species terms and slows training
several-fold). The envelope, with ``u = r / r_c``:

    f_p(u) = 1 - (p+1)(p+2)/2 u^p + p(p+2) u^(p+1) - p(p+1)/2 u^(p+2),  u < 1
    f_p(u) = 0,                                                         u >= 1

so that f, f' and f'' vanish at r_c: energies and forces stay continuous when an
atom crosses the cutoff.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange
from torch import nn

__all__ = ["BesselBasis", "polynomial_envelope", "RadialEmbedding", "radial_mlp"]


def polynomial_envelope(u: torch.Tensor, p: int = 6) -> torch.Tensor:
    """Smooth cutoff envelope of the reduced distance ``u = r / r_c`` (dimensionless)."""
    env = (
        1.0
        - 0.5 * (p + 1) * (p + 2) * u.pow(p)
        + p * (p + 2) * u.pow(p + 1)
        - 0.5 * p * (p + 1) * u.pow(p + 2)
    )
    return env * (u < 1.0).to(u.dtype)


class BesselBasis(nn.Module):
    """``sin(n pi r / r_c) / (r / r_c)`` for n = 1..num_basis (r in Å, output dimensionless).

    Args:
        r_max: cutoff r_c, Å.
        num_basis: number of basis functions N.
        trainable: whether the frequencies ``n pi / r_c`` are learnt.
    """

    def __init__(self, r_max: float, num_basis: int = 8, trainable: bool = False):
        super().__init__()
        self.r_max = float(r_max)
        self.prefactor = self.r_max
        freqs = torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype()) * math.pi / self.r_max
        if trainable:
            self.freqs = nn.Parameter(freqs)
        else:
            self.register_buffer("freqs", freqs)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r.unsqueeze(-1)
        return self.prefactor * torch.sin(self.freqs * r) / r


class RadialEmbedding(nn.Module):
    """Bessel basis times the polynomial envelope: (E,) distances -> (E, num_basis)."""

    def __init__(self, r_max: float, num_basis: int = 8, p: int = 6, trainable: bool = False):
        super().__init__()
        self.r_max = float(r_max)
        self.p = int(p)
        self.basis = BesselBasis(r_max, num_basis, trainable)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return self.basis(r) * polynomial_envelope(r / self.r_max, self.p).unsqueeze(-1)


def radial_mlp(net, x: torch.Tensor) -> torch.Tensor:
    """``net(x)`` for an e3nn ``FullyConnectedNet``, with its normalisation constants folded into the weights.

    e3nn multiplies each hidden layer's activations by two constants (the
    activation's second-moment normalisation and ``sqrt(var_out)``); here they
    scale the next layer's weights instead, so each layer is one matmul and one
    activation. The same function of ``x`` and the weights, to rounding; it
    saves six elementwise passes over the (pairs, hidden) activations per
    network, and their derivatives, in every training step.
    """
    scale = 1.0
    for layer in net:
        act = layer.act
        norm = (layer.h_in * layer.var_in / (layer.var_out if act is None else 1.0)) ** 0.5
        x = torch.mm(x, layer.weight * (scale / norm))
        scale = 1.0
        if act is not None:
            x = _SiLU.apply(x) if act.f is torch.nn.functional.silu else act.f(x)
            scale = (1.0 if act._is_id else act.cst) * layer.var_out ** 0.5
    return x if scale == 1.0 else x * scale


@njit(parallel=True, fastmath=True, cache=True)
def _silu_curvature(x, s, g, v, out):
    for i in prange(x.shape[0]):  # v g silu''(x), silu'' = s (1 - s) (2 + x (1 - 2 s)), s = sigmoid(x)
        out[i] = v[i] * g[i] * s[i] * (1.0 - s[i]) * (2.0 + x[i] * (1.0 - 2.0 * s[i]))


class _SiLU(torch.autograd.Function):
    """SiLU, whose derivative ``_SiLUSlope`` has a second derivative in two passes over the activations
    (PyTorch's takes about ten): training differentiates the radial networks twice."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.nn.functional.silu(x)

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return _SiLUSlope.apply(x, g)


class _SiLUSlope(torch.autograd.Function):
    """``g * silu'(x)``; differentiable to any order."""

    @staticmethod
    def forward(ctx, x, g):
        ctx.save_for_backward(x, g)
        return torch.ops.aten.silu_backward(g, x)

    @staticmethod
    def backward(ctx, v):
        x, g = ctx.saved_tensors
        grad_g = _SiLUSlope.apply(x, v) if ctx.needs_input_grad[1] else None
        if not ctx.needs_input_grad[0]:
            return None, grad_g
        s = torch.sigmoid(x)
        if torch.is_grad_enabled() or x.device.type != "cpu":  # PyTorch operations, differentiable again
            return v * g * s * (1 - s) * (2 + x * (1 - 2 * s)), grad_g
        flat = [t.contiguous().view(-1).numpy() for t in (x, s, g, v)]
        out = np.empty_like(flat[0])
        _silu_curvature(*flat, out)
        return torch.from_numpy(out).view(x.shape), grad_g
