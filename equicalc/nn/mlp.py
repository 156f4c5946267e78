"""e3nn's fully connected network (``e3nn.nn.FullyConnectedNet``), evaluated for training.

``folded_mlp(net, x)`` is ``net(x)`` with the network's normalisation constants
folded into the weights and a SiLU whose second derivative takes two passes over
the activations. Training differentiates every network twice (forces, then the
loss), on arrays of (pairs, hidden) that dominate the memory traffic of a step:
NequIP's radial networks and all of Allegro's networks run on pairs.
"""
from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from .kernel_options import KERNEL_OPTIONS

__all__ = ["folded_mlp"]


def folded_mlp(net, x: torch.Tensor) -> torch.Tensor:
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


@njit(**KERNEL_OPTIONS)
def _silu_curvature(x, s, g, v, out):
    for i in prange(x.shape[0]):  # v g silu''(x), silu'' = s (1 - s) (2 + x (1 - 2 s)), s = sigmoid(x)
        out[i] = v[i] * g[i] * s[i] * (1.0 - s[i]) * (2.0 + x[i] * (1.0 - 2.0 * s[i]))


class _SiLU(torch.autograd.Function):
    """SiLU, whose derivative ``_SiLUSlope`` has a second derivative in two passes over the activations
    (PyTorch's takes about ten): training differentiates the networks twice (forces, then the loss)."""

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
