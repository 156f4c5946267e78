"""Neighbour lists over a batch of structures.

``neighbor_list`` returns every ordered pair ``(i, j, S)`` with
``|x_j - x_i + S @ cell| < cutoff``, excluding ``i == j`` at zero shift: exactly
the pair set of ``ase.neighborlist.neighbor_list("ijS", atoms, cutoff)``, for
periodic, mixed-periodic and non-periodic structures, triclinic cells, and cells
smaller than the cutoff (several images of a neighbour, and images of the atom
itself, then appear). Shifts refer to the positions as given (not wrapped).

Backends:

- ``"torch"``: pure PyTorch, the whole batch in one vectorised all-pairs search
  over the needed periodic images, in bounded-memory chunks. Runs wherever the
  tensors live (GPU included). Cost grows as N² per structure, so it suits
  GPUs and many small structures.
- ``"vesin"``: the vesin cell-list library on CPU, linear in N, one call per
  structure.
- ``"torch_cluster"``: ``torch_cluster.radius`` on periodic images (only when
  the optional torch-cluster package is installed).
- ``"auto"``: ``"torch"`` on GPU; on CPU ``"vesin"`` if installed, else
  ``"torch_cluster"``, else ``"torch"``.

``SkinNeighborList`` keeps one structure's list, built at ``cutoff + skin``,
and reuses it while that provably gives the same ``cutoff`` pairs as a fresh
build (also under cell deformation, e.g. NPT).
"""
from __future__ import annotations

import importlib.util
import math
from typing import Tuple

import numpy as np
import torch

from .graph import cell_inverse

__all__ = ["edge_pair_index", "neighbor_list", "available_backends", "SkinNeighborList"]

BACKENDS = ("torch", "vesin", "torch_cluster")

# Upper bound on candidate pairs handled at once by the torch backend.
_TORCH_CHUNK = 1 << 20


def available_backends() -> list:
    """Names of the neighbour-list backends usable in this environment."""
    out = ["torch"]
    if importlib.util.find_spec("vesin") is not None:
        out.append("vesin")
    if importlib.util.find_spec("torch_cluster") is not None:
        out.append("torch_cluster")
    return out


def _resolve_backend(backend: str, device: torch.device) -> str:
    if backend not in ("auto",) + BACKENDS:
        raise ValueError(f"unknown neighbour-list backend {backend!r}; choose one of auto, {', '.join(BACKENDS)}")
    avail = available_backends()
    if backend == "auto":
        if device.type != "cpu":
            return "torch"
        for b in ("vesin", "torch_cluster", "torch"):
            if b in avail:
                return b
    if backend not in avail:
        hint = " (pip install --no-build-isolation torch-cluster)" if backend == "torch_cluster" else ""
        raise ValueError(f"neighbour-list backend {backend!r} is not installed{hint}")
    return backend


def _cell_geometry(cell: np.ndarray, pbc: np.ndarray, cutoff: float):
    """Completed cell, its inverse, and images needed along each direction.

    Non-periodic directions get cell vectors orthogonal to the periodic ones
    (the user's vectors there may be zero); they are used only to define
    fractional coordinates, never as shifts.
    """
    cell = np.array(cell, dtype=float)
    full = cell.copy()
    periodic = [k for k in range(3) if pbc[k]]
    basis = [cell[k] for k in periodic]
    # orthonormal basis of the periodic span, then complete it
    q = np.linalg.qr(np.array(basis).T)[0].T if basis else np.zeros((0, 3))
    comp = []
    for e in np.eye(3):
        v = e - sum(np.dot(e, b) * b for b in list(q) + comp)
        if np.linalg.norm(v) > 1e-6 and len(comp) < 3 - len(periodic):
            comp.append(v / np.linalg.norm(v))
    c = iter(comp)
    for k in range(3):
        if not pbc[k]:
            full[k] = next(c)
    inv = np.linalg.inv(full)
    # distance between lattice planes = 1 / |reciprocal vector|
    recip_norm = np.linalg.norm(inv, axis=0)
    n_img = np.where(pbc, np.ceil(cutoff * recip_norm - 1e-12), 0).astype(np.int64)
    return full, inv, n_img


def _wrap(positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, batch: torch.Tensor, cutoff: float):
    """Wrap positions into the cell along periodic directions.

    Returns wrapped positions, the integer offsets ``k`` with
    ``x = x_wrapped + k @ cell`` and the number of images per structure (B, 3).
    """
    cell_np = cell.detach().cpu().numpy()
    pbc_np = pbc.detach().cpu().numpy()
    inv_list, n_list = [], []
    for c, p in zip(cell_np, pbc_np):
        _, inv, n_img = _cell_geometry(c, p, cutoff)
        inv_list.append(inv)
        n_list.append(n_img)
    inv = torch.as_tensor(np.stack(inv_list), dtype=positions.dtype, device=positions.device)
    frac = torch.einsum("ni,nij->nj", positions, inv[batch])
    k = torch.where(pbc[batch], torch.floor(frac), torch.zeros_like(frac))
    wrapped = positions - torch.einsum("ni,nij->nj", k, cell[batch])
    n_img = torch.as_tensor(np.stack(n_list), dtype=torch.long, device=positions.device)
    return wrapped, k.long(), n_img


def _torch_backend(positions, cell, pbc, n_atoms, cutoff):
    device = positions.device
    batch = torch.repeat_interleave(torch.arange(len(n_atoms), device=device), n_atoms)
    wrapped, k, n_img = _wrap(positions, cell, pbc, batch, cutoff)
    dims = 2 * n_img + 1  # (B, 3)
    n_images = dims.prod(dim=1)
    counts = n_images * n_atoms * n_atoms
    starts = torch.cumsum(counts, 0) - counts
    atom_start = torch.cumsum(n_atoms, 0) - n_atoms
    total = int(counts.sum())
    cut2 = cutoff * cutoff
    out_i, out_j, out_s = [], [], []
    for t0 in range(0, total, _TORCH_CHUNK):
        t = torch.arange(t0, min(total, t0 + _TORCH_CHUNK), device=device)
        s = torch.searchsorted(starts, t, right=True) - 1
        q = t - starts[s]
        n = n_atoms[s]
        img, rem = q // (n * n), q % (n * n)
        li, lj = rem // n, rem % n
        d = dims[s]
        a = img // (d[:, 1] * d[:, 2])
        b = (img // d[:, 2]) % d[:, 1]
        c = img % d[:, 2]
        shift = torch.stack([a, b, c], dim=1) - n_img[s]
        gi, gj = atom_start[s] + li, atom_start[s] + lj
        vec = wrapped[gj] - wrapped[gi] + torch.einsum("ek,ekl->el", shift.to(positions.dtype), cell[s])
        keep = (vec * vec).sum(1) < cut2
        keep &= ~((gi == gj) & (shift == 0).all(1))
        out_i.append(gi[keep])
        out_j.append(gj[keep])
        out_s.append(shift[keep])
    if not out_i:
        return torch.zeros((2, 0), dtype=torch.long, device=device), torch.zeros((0, 3), dtype=torch.long, device=device)
    i, j, shift = torch.cat(out_i), torch.cat(out_j), torch.cat(out_s)
    # back to shifts for the positions as given: S = S_wrapped - k_j + k_i
    shift = shift - k[j] + k[i]
    return torch.stack([i, j]), shift


def _vesin_backend(positions, cell, pbc, n_atoms, cutoff):
    from vesin import NeighborList

    nl = NeighborList(cutoff=cutoff, full_list=True, sorted=True)  # deterministic pair order
    pos_np = positions.detach().cpu().numpy()
    cell_np = cell.detach().cpu().numpy()
    pbc_np = pbc.detach().cpu().numpy()
    out_i, out_j, out_s = [], [], []
    start = 0
    for b, n in enumerate(n_atoms.tolist()):
        p = pbc_np[b]
        box = cell_np[b] if p.any() else np.zeros((3, 3))
        if p.any() and not p.all():
            # keep the periodic vectors; give the open directions non-degenerate ones
            box, _, _ = _cell_geometry(cell_np[b], p, cutoff)
        i, j, s = nl.compute(pos_np[start:start + n], box, [bool(x) for x in p], "ijS")
        out_i.append(i.astype(np.int64) + start)
        out_j.append(j.astype(np.int64) + start)
        out_s.append(s.astype(np.int64))
        start += n
    dev = positions.device
    i = torch.as_tensor(np.concatenate(out_i), device=dev)
    j = torch.as_tensor(np.concatenate(out_j), device=dev)
    s = torch.as_tensor(np.concatenate(out_s).reshape(-1, 3), device=dev)
    return torch.stack([i, j]), s


def _torch_cluster_backend(positions, cell, pbc, n_atoms, cutoff):
    from torch_cluster import radius

    device = positions.device
    batch = torch.repeat_interleave(torch.arange(len(n_atoms), device=device), n_atoms)
    wrapped, k, n_img = _wrap(positions, cell, pbc, batch, cutoff)
    atom_start = (torch.cumsum(n_atoms, 0) - n_atoms).tolist()
    out_i, out_j, out_s = [], [], []
    for b, n in enumerate(n_atoms.tolist()):
        sl = slice(atom_start[b], atom_start[b] + n)
        x = wrapped[sl]
        ranges = [torch.arange(-m, m + 1, device=device) for m in n_img[b].tolist()]
        shifts = torch.cartesian_prod(*ranges).reshape(-1, 3)
        images = (x[None, :, :] + (shifts.to(x.dtype) @ cell[b])[:, None, :]).reshape(-1, 3)
        # radius(x, y, r): for every query point y, the points of x within r
        row, col = radius(images, x, cutoff, max_num_neighbors=images.shape[0])
        img, lj = col // n, col % n
        li = row
        s = shifts[img]
        vec = images[col] - x[li]
        keep = ((vec * vec).sum(1) < cutoff * cutoff) & ~((li == lj) & (s == 0).all(1))
        out_i.append(li[keep] + atom_start[b])
        out_j.append(lj[keep] + atom_start[b])
        out_s.append(s[keep])
    i, j, shift = torch.cat(out_i), torch.cat(out_j), torch.cat(out_s)
    shift = shift - k[j] + k[i]
    return torch.stack([i, j]), shift


def neighbor_list(
    positions: torch.Tensor,
    cell: torch.Tensor,
    pbc: torch.Tensor,
    n_atoms: torch.Tensor,
    cutoff: float,
    backend: str = "auto",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """All pairs closer than ``cutoff`` in a batch of structures.

    Args:
        positions: (N, 3) Cartesian positions, Å (float64 recommended).
        cell: (B, 3, 3) cells, rows are lattice vectors, Å.
        pbc: (B, 3) periodicity flags.
        n_atoms: (B,) atoms per structure; structures are concatenated in order.
        cutoff: pair cutoff, Å (pairs with distance strictly below it).
        backend: ``"auto"``, ``"torch"``, ``"vesin"`` or ``"torch_cluster"``.

    Returns:
        ``edge_index`` (2, E) int64 with global atom indices (row 0 centre ``i``,
        row 1 neighbour ``j``) and ``shifts`` (E, 3) int64 such that
        ``r_ij = x_j - x_i + shifts @ cell``. Both on the device of ``positions``.
    """
    if not cutoff > 0:
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    n_atoms = torch.as_tensor(n_atoms, dtype=torch.long, device=positions.device)
    if int(n_atoms.sum()) != positions.shape[0]:
        raise ValueError("n_atoms does not add up to the number of positions")
    cell = cell.to(positions.dtype)
    pbc = pbc.to(torch.bool)
    name = _resolve_backend(backend, positions.device)
    fn = {"torch": _torch_backend, "vesin": _vesin_backend, "torch_cluster": _torch_cluster_backend}[name]
    with torch.no_grad():
        return fn(positions.detach(), cell.detach(), pbc, n_atoms, float(cutoff))


class SkinNeighborList:
    """One structure's neighbour list, built at ``cutoff + skin`` and reused.

    The list is reused only while it provably holds every pair now within
    ``cutoff``: for any pair, the change of its vector since the build is
    bounded by ``cutoff * ||I - cell_new^-1 cell_old||_2`` (cell deformation)
    plus twice the largest atomic displacement measured in the old cell's frame.
    While that bound is below ``skin`` the stored pairs, filtered at ``cutoff``
    with the current geometry, equal a fresh build. A change of atom count,
    species, periodicity, or a move of an open-direction cell vector rebuilds.

    Args:
        cutoff: the network's cutoff r_max, Å.
        skin: extra buffer, Å (0 rebuilds every call).
        backend: neighbour-list backend name (see ``neighbor_list``).
    """

    def __init__(self, cutoff: float, skin: float = 0.5, backend: str = "auto"):
        if not (math.isfinite(skin) and skin >= 0):
            raise ValueError(f"skin must be a finite distance >= 0 Å, got {skin}")
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.backend = backend
        self.builds = 0
        self.calls = 0
        self._ref = None

    def reset(self) -> None:
        """Forget the stored list: the next call rebuilds."""
        self._ref = None

    def _can_reuse(self, graph) -> bool:
        ref = self._ref
        if ref is None or self.skin == 0:
            return False
        if graph.positions.shape != ref["positions"].shape:
            return False
        if not torch.equal(graph.numbers, ref["numbers"]) or not torch.equal(graph.pbc, ref["pbc"]):
            return False
        pbc = graph.pbc[0]
        cell_old, cell_new = ref["cell"][0], graph.cell[0]
        if pbc.all():
            # r_new - r_old = r_new (I - cell_new^-1 cell_old) + (df_j - df_i) cell_old (row vectors)
            inverse = cell_inverse(cell_new)
            m = torch.eye(3, dtype=cell_old.dtype, device=cell_old.device) - inverse @ cell_old
            deform = torch.linalg.matrix_norm(m)  # Frobenius: a bound on the spectral norm, without an SVD
            frac_new = graph.positions @ inverse
            frac_old = ref["frac"]
            disp = ((frac_new - frac_old) @ cell_old).norm(dim=1).max()
        else:
            if not torch.equal(cell_old, cell_new):
                return False
            deform = torch.zeros((), dtype=cell_old.dtype)
            disp = (graph.positions - ref["positions"]).norm(dim=1).max()
        bound = self.cutoff * deform + 2.0 * disp
        return bool(bound < self.skin)

    def update(self, graph):
        """Return ``graph`` (one structure) with its edges within ``cutoff``."""
        self.calls += 1
        if graph.num_graphs != 1:
            raise ValueError("SkinNeighborList handles one structure at a time")
        if not self._can_reuse(graph):
            g = graph.build_neighbors(self.cutoff + self.skin, backend=self.backend)
            ref = {
                "positions": graph.positions.clone(),
                "numbers": graph.numbers.clone(),
                "pbc": graph.pbc.clone(),
                "cell": graph.cell.clone(),
                "edge_index": g.edge_index,
                "shifts": g.shifts,
                "edge_pair": edge_pair_index(g.edge_index, g.shifts),
            }
            ref["n_pairs"] = int(ref["edge_pair"].max()) + 1 if ref["edge_pair"].numel() else 0
            if bool(graph.pbc[0].all()):
                ref["frac"] = graph.positions @ cell_inverse(graph.cell[0])
            self._ref = ref
            self.builds += 1
        ref = self._ref
        g = graph.with_edges(ref["edge_index"], ref["shifts"], ref["edge_pair"])
        if self.skin > 0:
            vec = g.edge_vectors()
            keep = (vec * vec).sum(1) < self.cutoff * self.cutoff
            g = g.with_edges(ref["edge_index"][:, keep], ref["shifts"][keep], _kept_pairs(ref["edge_pair"], ref["n_pairs"], keep))
        return g


def _kept_pairs(edge_pair: torch.Tensor, n_pairs: int, keep: torch.Tensor) -> torch.Tensor:
    """The pair ids (0..n_pairs-1) of the kept edges, renumbered 0..P'-1 in their old order (no sort)."""
    kept = edge_pair[keep]
    present = torch.zeros(n_pairs, dtype=torch.long, device=edge_pair.device)
    present[kept] = 1
    return torch.index_select(torch.cumsum(present, 0) - 1, 0, kept)


def edge_pair_index(edge_index: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Id (0..P-1) of the unordered pair of every edge: ``(i, j, S)`` and ``(j, i, -S)`` share one.

    The two edges of a pair have exactly opposite vectors, hence equal lengths,
    so functions of the distance need computing once per pair. Works for any
    edge list (an edge without its reverse simply gets an id of its own).
    """
    i, j = edge_index[0], edge_index[1]
    if i.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=i.device)
    swap = i > j
    lo, hi = torch.where(swap, j, i), torch.where(swap, i, j)
    s = torch.where(swap.unsqueeze(1), -shifts, shifts)
    # an atom paired with its own image: orient S so that its first non-zero component is positive
    first = torch.where(s[:, 0] != 0, s[:, 0], torch.where(s[:, 1] != 0, s[:, 1], s[:, 2]))
    s = torch.where(((i == j) & (first < 0)).unsqueeze(1), -s, s)
    _, atoms_rank = torch.unique(lo * (int(hi.max()) + 1) + hi, return_inverse=True)
    span = int(s.abs().max()) * 2 + 1
    code = ((s[:, 0] + span // 2) * span + (s[:, 1] + span // 2)) * span + (s[:, 2] + span // 2)
    _, pair = torch.unique(atoms_rank * span ** 3 + code, return_inverse=True)
    return pair
