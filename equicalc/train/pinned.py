"""Pinned frames: a few small labelled cells evaluated at every training step, besides the batch.

A batch holds 4 of some 1700 frames, so a property that rests on a handful of
frames (a crystal's zero stress at its lattice constant, its elastic constants,
its force constants) is seen once an epoch among large errors elsewhere. Pinned
frames (``data.pinned``) join every step's forward pass instead, and their
errors enter the loss with the loss weights times ``loss.pinned_weight``.

Two frames with the same ``info["pair"]`` (any value; same species in the same
order) form a pair, and what is fitted is their difference: energy per atom,
forces and stress of the second minus the first. Under ±strain that difference
is an elastic response, under ±displacement a row of force constants; an offset
common to both frames, which the rest of the data may want, does not enter. A
frame without ``pair`` is fitted as it is.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
import torch

from ..data import Batch, Frame, collate, graph_item, read_frames
from ..graph import AtomicGraph

__all__ = ["PinnedFrames", "joined"]


def _pairs(frames: List[Frame], where: str) -> Tuple[List[Tuple[int, int]], List[int]]:
    """The frames' pairs (positions, in file order) and the positions of the unpaired ones; checked."""
    groups: Dict[str, List[int]] = {}
    singles = []
    for k, f in enumerate(frames):
        if "pair" in f.atoms.info:
            groups.setdefault(str(f.atoms.info["pair"]), []).append(k)
        else:
            singles.append(k)
    for name, members in groups.items():
        if len(members) != 2:
            raise ValueError(f"{where}: pair {name!r} has {len(members)} frame(s) ({', '.join(map(str, members))}); "
                             "a pair is two frames")
        a, b = (frames[k].atoms.numbers for k in members)
        if len(a) != len(b) or np.any(a != b):
            raise ValueError(f"{where}: the frames of pair {name!r} ({members[0]} and {members[1]}) do not hold the "
                             "same species in the same order")
    return [tuple(m) for m in groups.values()], singles


class PinnedFrames:
    """The pinned frames of a run as one collated ``Batch``, with which of them are paired.

    Args:
        frames: labelled frames (``read_frames``); at least one.
        r_max: the model's cutoff (Å), for the neighbour lists.
        where: what names them in error messages (the file).
    """

    def __init__(self, frames: List[Frame], r_max: float, where: str = "data.pinned"):
        if not frames:
            raise ValueError(f"{where}: no frames")
        self.frames = frames
        self.pairs, self.singles = _pairs(frames, where)
        self.batch = collate([graph_item(f, r_max, k) for k, f in enumerate(frames)])
        self.offsets = torch.cumsum(self.batch.graph.n_atoms, 0) - self.batch.graph.n_atoms

    @classmethod
    def read(cls, path: str, r_max: float, **keys) -> "PinnedFrames":
        """The frames of ``path`` (labels named by ``keys``, as ``read_frames`` takes them)."""
        return cls(read_frames(path, **keys), r_max, str(path))

    def __len__(self) -> int:
        return len(self.frames)

    def _atoms(self, k: int) -> slice:
        start = int(self.offsets[k])
        return slice(start, start + int(self.batch.graph.n_atoms[k]))

    def errors(self, out: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Errors of the model's ``out`` on these frames (``compute_properties`` on ``self.batch``, stress in eV/Å³
        under ``"stress"``): energy per atom (eV), forces (eV/Å), stress (eV/Å³); of pairs, their differences."""
        ref, n = self.batch, self.batch.graph.n_atoms.to(out["energy"].device)
        e = (out["energy"].double() - ref.energy) / n
        f = out["forces"].double() - ref.forces
        s = out["stress"].double() - ref.stress if "stress" in out else None
        parts = {"energy": [], "forces": [], "stress": []}
        for i, j in self.pairs:
            parts["energy"].append((e[j] - e[i]).reshape(1))
            parts["forces"].append(f[self._atoms(j)] - f[self._atoms(i)])
            if s is not None and bool(ref.has_stress[i] and ref.has_stress[j]):
                parts["stress"].append((s[j] - s[i]).reshape(1, 9))
        for k in self.singles:
            parts["energy"].append(e[k].reshape(1))
            parts["forces"].append(f[self._atoms(k)])
            if s is not None and bool(ref.has_stress[k]):
                parts["stress"].append(s[k].reshape(1, 9))
        return {key: torch.cat(v) for key, v in parts.items() if v}

    def loss(self, out: Dict[str, torch.Tensor], loss_cfg) -> torch.Tensor:
        """``loss.pinned_weight`` times the loss weights times each quantity's mean squared error (``errors``)."""
        err = self.errors(out)
        weights = {"energy": loss_cfg.energy_weight, "forces": loss_cfg.forces_weight,
                   "stress": loss_cfg.stress_weight}
        total = sum(weights[key] * torch.mean(value ** 2) for key, value in err.items())
        return loss_cfg.pinned_weight * total


def joined(batch: Batch, extra: Batch) -> Batch:
    """``batch`` followed by ``extra`` as one ``Batch`` (edges of ``extra`` offset past ``batch``'s atoms)."""
    g, h = batch.graph, extra.graph
    graph = AtomicGraph(
        positions=torch.cat([g.positions, h.positions]), numbers=torch.cat([g.numbers, h.numbers]),
        cell=torch.cat([g.cell, h.cell]), pbc=torch.cat([g.pbc, h.pbc]),
        batch=torch.cat([g.batch, h.batch + g.num_graphs]), n_atoms=torch.cat([g.n_atoms, h.n_atoms]),
        edge_index=torch.cat([g.edge_index, h.edge_index + g.num_atoms], dim=1),
        shifts=torch.cat([g.shifts, h.shifts]))
    return Batch(graph, torch.cat([batch.energy, extra.energy]), torch.cat([batch.forces, extra.forces]),
                 torch.cat([batch.stress, extra.stress]), torch.cat([batch.has_stress, extra.has_stress]),
                 torch.cat([batch.index, extra.index]))
