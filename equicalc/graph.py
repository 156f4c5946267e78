"""``AtomicGraph``: one batched container for one or many atomic structures.

Structures are concatenated atom-wise; ``batch[i]`` says which structure atom
``i`` belongs to. Geometry (positions, cells) is kept in float64 whatever the
network's precision: neighbour decisions and edge vectors are computed there
and only then handed to the network in its own dtype.

Edges follow one convention throughout equicalc: ``edge_index[0]`` is the
centre atom ``i``, ``edge_index[1]`` its neighbour ``j`` and the edge vector is
``r_ij = x_j - x_i + shifts_ij @ cell`` (Å), with integer cell shifts.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np
import torch

__all__ = ["AtomicGraph", "cell_inverse", "cell_volume", "check_atoms", "check_distances", "MIN_DISTANCE"]

# Closest approach (Å) that any evaluation accepts. At 0.1 Å the screened nuclear repulsion (ZBL) is about
# 90 eV for H–H and 5e4 eV for Cu–Cu, a state no simulation reaches: such input is a mistake (a duplicated
# atom, positions in the wrong unit), and at 0 the edge direction is undefined.
MIN_DISTANCE = 0.1


def cell_volume(cell: torch.Tensor) -> torch.Tensor:
    """Volumes |a . (b x c)| of cells (..., 3, 3) with lattice vectors as rows, Å^3 (differentiable).

    In elementwise operations: for 3 x 3 matrices a LAPACK determinant costs far more.
    """
    return (torch.linalg.cross(cell[..., 1, :], cell[..., 2, :]) * cell[..., 0, :]).sum(-1).abs()


def cell_inverse(cell: torch.Tensor) -> torch.Tensor:
    """The inverse of a cell (3, 3) (rows a, b, c): the columns (b x c, c x a, a x b) / det, 1/Å.

    Fractional coordinates are ``positions @ cell_inverse(cell)``.
    """
    a, b, c = cell[0], cell[1], cell[2]
    cols = torch.stack([torch.linalg.cross(b, c), torch.linalg.cross(c, a), torch.linalg.cross(a, b)], dim=1)
    return cols / (a * cols[:, 0]).sum()


def check_atoms(atoms, allowed_numbers: Optional[Sequence[int]] = None, what: str = "atoms") -> None:
    """Raise ``ValueError`` naming the problem if ``atoms`` cannot be evaluated.

    Checks: at least one atom; finite positions; a non-degenerate cell vector
    along every periodic direction and, for fully periodic cells, a non-zero
    volume; and, when ``allowed_numbers`` is given, only those atomic numbers.
    """
    n = len(atoms)
    if n == 0:
        raise ValueError(f"{what}: the Atoms object is empty (0 atoms)")
    pos = atoms.positions
    if not np.all(np.isfinite(pos)):
        bad = np.where(~np.all(np.isfinite(pos), axis=1))[0]
        raise ValueError(f"{what}: positions contain NaN or inf (atoms {bad[:10].tolist()})")
    cell = np.asarray(atoms.cell.array, dtype=float)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if not np.all(np.isfinite(cell)):
        raise ValueError(f"{what}: the cell contains NaN or inf")
    for k in range(3):
        if pbc[k] and np.linalg.norm(cell[k]) < 1e-8:
            raise ValueError(
                f"{what}: pbc is True along direction {k} but cell vector {k} is zero; "
                "set a cell (atoms.cell = ...) or turn periodicity off (atoms.pbc = ...)"
            )
    if pbc.any():
        periodic = cell[pbc]
        # the periodic cell vectors must be linearly independent
        if np.linalg.matrix_rank(periodic, tol=1e-8) < len(periodic):
            raise ValueError(f"{what}: the periodic cell vectors are linearly dependent (degenerate cell)")
    if allowed_numbers is not None:
        allowed = set(int(z) for z in allowed_numbers)
        present = set(int(z) for z in np.unique(atoms.numbers))
        unknown = sorted(present - allowed)
        if unknown:
            from ase.data import chemical_symbols

            names = ", ".join(chemical_symbols[z] for z in unknown)
            known = ", ".join(chemical_symbols[z] for z in sorted(allowed))
            raise ValueError(f"{what}: species {names} not in the model (the model knows {known})")


def check_distances(graph, what: str = "atoms", minimum: float = MIN_DISTANCE) -> None:
    """``ValueError`` naming the closest pair of atoms (structure, indices, distance) if it is below ``minimum`` Å.

    Looks at the edges of ``graph`` (its neighbour list must be built).
    """
    if graph.edge_index is None or graph.edge_index.shape[1] == 0:
        return
    lengths = graph.edge_vectors().norm(dim=1)
    k = int(torch.argmin(lengths))
    if float(lengths[k]) >= minimum:
        return
    i, j = (int(x) for x in graph.edge_index[:, k])
    b = int(graph.batch[i])
    start = int(graph.n_atoms[:b].sum())
    where = f"{what}, structure {b}" if graph.num_graphs > 1 else what
    raise ValueError(f"{where}: atoms {i - start} and {j - start} are {float(lengths[k]):.3g} Å apart (closer than "
                     f"{minimum} Å: coincident or overlapping atoms)")


@dataclass
class AtomicGraph:
    """Batched structures (and, once built, their neighbour list).

    Attributes:
        positions: (N, 3) float64, Å.
        numbers: (N,) int64 atomic numbers.
        cell: (B, 3, 3) float64, rows are lattice vectors, Å.
        pbc: (B, 3) bool.
        batch: (N,) int64, structure index of every atom.
        n_atoms: (B,) int64, atoms per structure.
        edge_index: (2, E) int64 or None; row 0 centre ``i``, row 1 neighbour ``j``.
        shifts: (E, 3) int64 cell shifts or None.
        edge_pair: (E,) int64 unordered-pair id of every edge (``equicalc.neighbors.edge_pair_index``) when
            the neighbour list supplies it, else None (computed where needed).
    """

    positions: torch.Tensor
    numbers: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    batch: torch.Tensor
    n_atoms: torch.Tensor
    edge_index: Optional[torch.Tensor] = None
    shifts: Optional[torch.Tensor] = None
    edge_pair: Optional[torch.Tensor] = None

    @property
    def num_graphs(self) -> int:
        """Number of structures in the batch."""
        return int(self.n_atoms.shape[0])

    @property
    def num_atoms(self) -> int:
        """Total number of atoms in the batch."""
        return int(self.positions.shape[0])

    @property
    def device(self) -> torch.device:
        return self.positions.device

    @classmethod
    def from_atoms(cls, atoms, device="cpu") -> "AtomicGraph":
        """One structure from an ``ase.Atoms`` (no neighbour list yet)."""
        return cls.from_atoms_list([atoms], device=device)

    @classmethod
    def from_atoms_list(cls, atoms_list, device="cpu") -> "AtomicGraph":
        """Concatenate many ``ase.Atoms`` into one batch (no neighbour list yet)."""
        if len(atoms_list) == 0:
            raise ValueError("from_atoms_list: the list of structures is empty")
        pos = np.concatenate([a.positions for a in atoms_list], axis=0)
        numbers = np.concatenate([a.numbers for a in atoms_list], axis=0)
        cell = np.stack([np.asarray(a.cell.array, dtype=float) for a in atoms_list])
        pbc = np.stack([np.asarray(a.pbc, dtype=bool) for a in atoms_list])
        n_atoms = np.array([len(a) for a in atoms_list], dtype=np.int64)
        batch = np.repeat(np.arange(len(atoms_list)), n_atoms)
        t = lambda x, dt: torch.as_tensor(x, dtype=dt, device=device)  # noqa: E731
        return cls(
            positions=t(pos, torch.float64),
            numbers=t(numbers, torch.long),
            cell=t(cell, torch.float64),
            pbc=t(pbc, torch.bool),
            batch=t(batch, torch.long),
            n_atoms=t(n_atoms, torch.long),
        )

    def to(self, device) -> "AtomicGraph":
        """The same graph on another device."""
        moved = {
            k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()
        }
        return AtomicGraph(**moved)

    def with_edges(self, edge_index: torch.Tensor, shifts: torch.Tensor,
                   edge_pair: Optional[torch.Tensor] = None) -> "AtomicGraph":
        """A copy of this graph with the given edges (and their pair ids, if known)."""
        return replace(self, edge_index=edge_index, shifts=shifts, edge_pair=edge_pair)

    def build_neighbors(self, cutoff: float, backend: str = "auto") -> "AtomicGraph":
        """A copy of this graph with all pairs closer than ``cutoff`` (Å)."""
        from .neighbors import neighbor_list

        edge_index, shifts = neighbor_list(
            self.positions, self.cell, self.pbc, self.n_atoms, cutoff, backend=backend
        )
        return self.with_edges(edge_index, shifts)

    def edge_vectors(self, positions: Optional[torch.Tensor] = None, cell: Optional[torch.Tensor] = None):
        """Edge vectors ``x_j - x_i + S @ cell`` (E, 3), Å.

        ``positions`` and ``cell`` default to the graph's own; pass strained
        copies to differentiate with respect to a strain.
        """
        if self.edge_index is None:
            raise RuntimeError("edge_vectors: the graph has no neighbour list; call build_neighbors first")
        pos = self.positions if positions is None else positions
        cell = self.cell if cell is None else cell
        i, j = self.edge_index[0], self.edge_index[1]
        # index_select: its backward (index_add) is deterministic on CPU
        edge_cell = torch.index_select(cell, 0, torch.index_select(self.batch, 0, i))  # (E, 3, 3)
        shift_vec = torch.einsum("ek,ekl->el", self.shifts.to(pos.dtype), edge_cell)
        return torch.index_select(pos, 0, j) - torch.index_select(pos, 0, i) + shift_vec
