"""The inference form of the channel-wise convolution, applied to a model by ``fuse``.

    model = fuse(load_model("model.pth"))     # inference on CPU; EquiCalc does this by default

``fuse(model)`` replaces every ``ChannelwiseTensorProduct`` of ``model`` by a
``FusedChannelwiseTensorProduct``: the same contraction on the same numba
kernels (``equicalc.nn.conv_kernels``), which can hand its feature layout
changes to its neighbours: once ``take_layouts`` is called (``freeze_linears``
folds the permutations into the linear maps around the convolution), its
``convolve`` takes and gives the kernels' own (m, u) layout, so that no
permutation runs per step.

A fused model is for inference: training refuses it
(``compute_properties(..., training=True)`` raises). On a GPU the fused module
runs the PyTorch path.
"""
from __future__ import annotations

import copy

import torch

from . import conv_kernels
from .tensor_product import ChannelwiseTensorProduct

__all__ = ["fuse", "FusedChannelwiseTensorProduct"]


class FusedChannelwiseTensorProduct(ChannelwiseTensorProduct):
    """A ``ChannelwiseTensorProduct`` that hands its layout changes to the linear maps around it (inference only)."""

    fused = True

    def __init__(self, tp: ChannelwiseTensorProduct):
        super().__init__(tp.irreps_in, tp.irreps_sh, tp.irreps_target)
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
        if self.layouts is None:
            return super().convolve(x, y, weights, edge_index, weight_index)
        if self.kernels and x.device.type == "cpu":
            return conv_kernels.convolve(self.plan, x, y, weights, edge_index, weight_index)
        to_mu, from_mu = (torch.argsort(p).to(x.device) for p in self.layouts)
        return super().convolve(x[:, to_mu], y, weights, edge_index, weight_index)[:, from_mu]


def fuse(model, inplace: bool = False):
    """``model`` with its channel-wise convolutions in their inference form (``FusedChannelwiseTensorProduct``).

    The weights and results are the same; the layouts move into the linear maps
    when ``freeze_linears`` runs. Models without such convolutions (Allegro) come
    back unchanged. ``inplace=False`` (default) leaves ``model`` as it was.
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
