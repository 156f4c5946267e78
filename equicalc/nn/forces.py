"""Energy, forces, stress and virial from one autograd pass (the strain trick).

A symmetric strain ``eps`` (3x3 per structure, zero, requiring grad) deforms
positions and cell, ``x' = x (I + eps)`` and ``cell' = cell (I + eps)``; the
network sees edge vectors of the deformed geometry. Then, at ``eps = 0``,

    F = -dE/dx   (eV/Å),   sigma = (1/V) dE/d eps   (eV/Å^3, ASE sign: positive = tensile),
    virial W = -dE/d eps (eV).

Both gradients come from a single ``torch.autograd.grad`` call.
"""
from __future__ import annotations

from typing import Dict

import torch

from ..graph import cell_volume
from ..neighbors import edge_pair_index
from .threads import match_threads

__all__ = ["compute_properties", "is_fused"]


def is_fused(model) -> bool:
    """Whether any part of ``model`` is an inference-only fast path: a fused convolution
    (``equicalc.nn.fuse``) or a frozen self-connection (``equicalc.nn.nequip.freeze_self_connections``)."""
    return any(getattr(m, "fused", False) for m in model.modules())


def compute_properties(
    model,
    graph,
    forces: bool = True,
    stress: bool = True,
    training: bool = False,
) -> Dict[str, torch.Tensor]:
    """Evaluate ``model`` on ``graph`` (which must carry edges within ``model.r_max``).

    Args:
        model: a network mapping (numbers, edge_index, edge_vectors) to per-atom energies, or its
            ``DistributedDataParallel`` wrapper (training under DDP).
        graph: ``AtomicGraph`` with ``edge_index`` and ``shifts``.
        forces: compute forces.
        stress: compute virial and stress (stress is NaN for structures whose
            cell has zero volume, e.g. non-periodic ones).
        training: keep the graph of the derivatives (``create_graph=True``) so a
            loss on forces/stress can be back-propagated.

    Returns:
        dict with ``energy`` (B,), ``energies`` (N,), and when asked ``forces``
        (N, 3), ``virial`` (B, 3, 3) and ``stress`` (B, 3, 3); geometry-derived
        outputs are float64 if the graph geometry is.
    """
    net = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    if training and is_fused(net):
        raise ValueError("this model is for inference only (fused convolutions or frozen self-connections, as "
                         "EquiCalc prepares it); train the model as load_model or build_model give it")
    dtype = next(net.parameters()).dtype
    if graph.positions.device.type == "cpu":
        match_threads()
    positions, cell = graph.positions, graph.cell
    need_grad = forces or stress
    inputs = []
    if need_grad:
        positions = positions.detach().requires_grad_(forces)
        if forces:
            inputs.append(positions)
    if stress:
        strain = torch.zeros_like(cell, requires_grad=True)
        inputs.append(strain)
        sym = 0.5 * (strain + strain.transpose(1, 2))
        positions = positions + torch.einsum("ni,nij->nj", positions, sym[graph.batch])
        cell = cell + torch.bmm(cell, sym)
    with torch.set_grad_enabled(need_grad or torch.is_grad_enabled()):
        edge_vec = graph.edge_vectors(positions, cell).to(dtype)
        pairs = None
        if getattr(net, "uses_edge_pairs", False):
            pairs = graph.edge_pair if graph.edge_pair is not None else edge_pair_index(graph.edge_index, graph.shifts)
        energies = model(graph.numbers, graph.edge_index, edge_vec, edge_pair=pairs)
        energy = torch.zeros(graph.num_graphs, dtype=energies.dtype, device=energies.device)
        energy = energy.index_add(0, graph.batch, energies)
        out = {"energy": energy, "energies": energies}
        if need_grad:
            grads = torch.autograd.grad(
                energy.sum(), inputs, create_graph=training, retain_graph=training, allow_unused=True
            )
            grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs)]
            if forces:
                out["forces"] = -grads[0]
            if stress:
                d_strain = grads[-1]
                volume = cell_volume(graph.cell)
                out["virial"] = -d_strain
                out["stress"] = d_strain / volume.view(-1, 1, 1)
    return out
