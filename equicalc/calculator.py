"""``EquiCalc``: the ASE calculator for equicalc models.

    from equicalc import EquiCalc
    atoms.calc = EquiCalc("model.pth")
    atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()

Units and signs are ASE's: eV, Å, eV/Å, stress in eV/Å^3 (positive = tensile,
Voigt order xx yy zz yz xz xy). Stress is available for fully periodic cells.
"""
from __future__ import annotations

import copy
from typing import List, Optional, Sequence

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from ase.stress import full_3x3_to_voigt_6_stress

from . import memory
from .device import resolve_device, resolve_dtype
from .graph import AtomicGraph, check_atoms, check_distances
from .model_io import load_model
from .models import model_path
from .neighbors import SkinNeighborList
from .nn import compute_properties, fuse
from .nn.nequip import freeze_gates, freeze_linears, freeze_radial_networks, freeze_self_connections
from .nn.tensor_product import ChannelwiseTensorProduct

__all__ = ["EquiCalc"]


class EquiCalc(Calculator):
    """ASE calculator evaluating an equicalc model.

    Args:
        model: path to a ``model.pth``, the name of a shipped model (``"cuzr"``; ``equicalc models``
            lists them), or an already-built model (``build_model``/``load_model``).
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        dtype: ``None`` keeps the model's precision; ``"float32"`` or ``"float64"`` converts.
        neighbor_backend: ``"auto"``, ``"torch"``, ``"vesin"`` or ``"torch_cluster"``.
        skin: neighbour-list skin, Å: the list is built at ``r_max + skin`` and
            reused while that is exact (0 rebuilds at every call).
        max_edges_per_batch: memory budget of ``calculate_batch``: structures are
            grouped so that one forward pass sees at most this many edges
            (a single larger structure still runs alone).
        fused_kernels: on CPU, run the convolutions on equicalc's numba kernels
            (``equicalc.nn.conv_kernels``: same contraction, about 2x faster than
            PyTorch operations) and interpolate NequIP's radial networks from a
            table in the pair distance (``equicalc.nn.radial_table``, equal to the
            networks to about 1e-13 of the largest weight beyond 1 Å in float64 and to
            float32's rounding in float32); ``"auto"``
            and ``True`` use them when the device is a CPU, ``False`` never (the
            PyTorch path, the reference). On every device the calculator's copy
            of a NequIP model has its self-connections, linears and gates in
            inference-only forms derived from the weights (``equicalc.nn.nequip``).
        keep_freed_memory: on a CPU, let the process keep the large blocks it frees for
            reuse (``equicalc.memory``: on Linux with glibc, 20-35 % off a 2000-atom
            step, at the price of up to 512 MiB kept after a large calculation); process-wide.

    Properties: ``energy``, ``free_energy`` (eV), ``energies`` (eV per atom),
    ``forces`` (eV/Å), ``stress`` (eV/Å^3, Voigt; fully periodic cells only).
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(
        self,
        model,
        device="auto",
        dtype=None,
        neighbor_backend: str = "auto",
        skin: float = 0.5,
        max_edges_per_batch: Optional[int] = None,
        fused_kernels="auto",
        keep_freed_memory: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.device = resolve_device(device)
        if fused_kernels not in ("auto", True, False):
            raise ValueError(f"fused_kernels must be 'auto', True or False, got {fused_kernels!r}")
        if keep_freed_memory and self.device.type == "cpu":
            memory.keep_freed_memory()
        model = _load(model, self.device)
        if dtype is not None:
            model = model.to(resolve_dtype(dtype))
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        freeze_self_connections(self.model)  # one matmul per layer instead of e3nn's one-hot tensor product
        self.fused_kernels = bool(fused_kernels) and self.device.type == "cpu"
        if self.fused_kernels:
            freeze_radial_networks(self.model)  # radial networks interpolated from a table (numba kernels)
            self.model = fuse(self.model, inplace=True)  # the convolutions' layouts move into the linears
        else:
            for module in self.model.modules():
                if isinstance(module, ChannelwiseTensorProduct):
                    module.kernels = False  # PyTorch operations
        freeze_linears(self.model)  # one matmul per linear, with the convolutions' layouts folded in
        freeze_gates(self.model)  # the gated nonlinearity in a few operations, its input order folded in
        self.dtype = next(self.model.parameters()).dtype
        self.r_max = float(self.model.r_max)
        from ase.data import atomic_numbers

        self.allowed_numbers = [atomic_numbers[s] for s in self.model.species]
        self.neighbor_backend = neighbor_backend
        self.skin = float(skin)
        self.neighbors = SkinNeighborList(self.r_max, skin=self.skin, backend=neighbor_backend)
        if max_edges_per_batch is None:
            max_edges_per_batch = 4_000_000 if self.device.type == "cuda" else 400_000
        if isinstance(max_edges_per_batch, bool) or not isinstance(max_edges_per_batch, int) or max_edges_per_batch < 1:
            raise ValueError(f"max_edges_per_batch must be a positive integer, got {max_edges_per_batch!r}")
        self.max_edges_per_batch = max_edges_per_batch

    def fingerprint(self) -> dict:
        """What identifies this calculator's results: architecture, dtype, cutoff and a SHA-256 of the weights.

        Runs (quench) record it and refuse to resume with a calculator whose fingerprint differs.
        """
        import hashlib

        digest = hashlib.sha256()
        for key, value in sorted(self.model.state_dict().items()):
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        return {"class": "EquiCalc", "architecture": self.model.spec.architecture,
                "dtype": str(self.dtype).replace("torch.", ""), "r_max": self.r_max, "weights_sha256": digest.hexdigest()}

    # -- single structure ------------------------------------------------------
    def check_state(self, atoms, tol=1e-15):
        """ASE's check for changes since the last calculation, answered at once when nothing changed at all.

        ASE asks once per property (energy, forces, stress: three times per MD step) and compares every array
        with a tolerance; a bitwise-equal structure has no changes under any tolerance.
        """
        if self.atoms is not None and _identical(self.atoms, atoms):
            return []
        return super().check_state(atoms, tol)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """Evaluate energy, per-atom energies, forces and (periodic cells) stress."""
        super().calculate(atoms, properties, system_changes)
        check_atoms(self.atoms, self.allowed_numbers)
        graph = AtomicGraph.from_atoms(self.atoms, device=self.device)
        if "numbers" in system_changes or "pbc" in system_changes:
            self.neighbors.reset()
        graph = self.neighbors.update(graph)
        self.results = self._evaluate(graph, [self.atoms])[0]

    def _graph_from_lists(self, atoms_list, neighbor_lists) -> AtomicGraph:
        """One batched graph whose edges come from each structure's own (reused) neighbour list."""
        if len(neighbor_lists) != len(atoms_list):
            raise ValueError(f"calculate_batch: {len(neighbor_lists)} neighbour lists for {len(atoms_list)} structures")
        edges, shifts, start = [], [], 0
        for atoms, nl in zip(atoms_list, neighbor_lists):
            g = nl.update(AtomicGraph.from_atoms(atoms, device=self.device))
            edges.append(g.edge_index + start)
            shifts.append(g.shifts)
            start += len(atoms)
        graph = AtomicGraph.from_atoms_list(atoms_list, device=self.device)
        return graph.with_edges(torch.cat(edges, dim=1), torch.cat(shifts, dim=0))

    def _evaluate(self, graph, atoms_list) -> List[dict]:
        check_distances(graph)
        periodic = graph.pbc.all(dim=1)
        want_stress = bool(periodic.any())
        out = compute_properties(self.model, graph, forces=True, stress=want_stress)
        for key in ("energy", "forces") + (("stress",) if want_stress else ()):
            values = out[key][periodic] if key == "stress" else out[key]
            if not bool(torch.isfinite(values).all()):
                raise ValueError(f"EquiCalc: the model gave a non-finite {key} (its weights or the structure "
                                 "are outside what it can evaluate)")
        energy = out["energy"].detach().double().cpu().numpy()
        energies = out["energies"].detach().double().cpu().numpy()
        forces = out["forces"].detach().double().cpu().numpy()
        stress = out["stress"].detach().double().cpu().numpy() if want_stress else None
        results = []
        start = 0
        for b, atoms in enumerate(atoms_list):
            n = len(atoms)
            r = {
                "energy": float(energy[b]),
                "free_energy": float(energy[b]),
                "energies": energies[start:start + n].copy(),
                "forces": forces[start:start + n].copy(),
            }
            if stress is not None and bool(periodic[b]):
                r["stress"] = full_3x3_to_voigt_6_stress(stress[b])
            results.append(r)
            start += n
        return results

    # -- many structures ---------------------------------------------------------
    def neighbor_lists(self, n: int) -> List[SkinNeighborList]:
        """``n`` neighbour lists with this calculator's cutoff, skin and backend, for ``calculate_batch`` to reuse
        between calls on the same ``n`` structures as they move (replicas of an ensemble)."""
        return [SkinNeighborList(self.r_max, skin=self.skin, backend=self.neighbor_backend) for _ in range(n)]

    def calculate_batch(self, atoms_list: Sequence, show_progress: bool = False,
                        neighbor_lists: Optional[Sequence[SkinNeighborList]] = None) -> List[dict]:
        """Evaluate many structures in batched forward passes.

        Structures of any sizes and species mixes are grouped into passes of at
        most ``max_edges_per_batch`` edges. Returns one dict per structure with
        ``energy``, ``free_energy``, ``energies``, ``forces`` and, for fully
        periodic cells, ``stress`` (ASE units, as ``calculate`` gives).

        ``neighbor_lists`` (from ``neighbor_lists(n)``, one per structure, kept by the caller between calls):
        each structure's list is reused within its skin, as ``calculate`` does, and all structures go in one
        pass. Results equal fresh builds.
        """
        atoms_list = list(atoms_list)
        if not atoms_list:
            return []
        for k, atoms in enumerate(atoms_list):
            check_atoms(atoms, self.allowed_numbers, what=f"structure {k}")
        if neighbor_lists is not None:
            return self._evaluate(self._graph_from_lists(atoms_list, neighbor_lists), atoms_list)
        graph = AtomicGraph.from_atoms_list(atoms_list, device=self.device).build_neighbors(
            self.r_max, backend=self.neighbor_backend
        )
        edge_batch = graph.batch[graph.edge_index[0]]
        edges_per = torch.bincount(edge_batch, minlength=graph.num_graphs).cpu().tolist()
        groups, current, count = [], [], 0
        for k, e in enumerate(edges_per):
            if current and count + e > self.max_edges_per_batch:
                groups.append(current)
                current, count = [], 0
            current.append(k)
            count += e
        groups.append(current)
        if len(groups) == 1:
            return self._evaluate(graph, atoms_list)
        from tqdm.auto import tqdm

        # each pass reuses its structures' part of the neighbour list built above
        atom_start = (torch.cumsum(graph.n_atoms, 0) - graph.n_atoms).tolist()
        results: List[dict] = []
        for group in tqdm(groups, desc="calculate_batch", disable=not show_progress):
            first, last = group[0], group[-1]
            sub = atoms_list[first:last + 1]
            mask = (edge_batch >= first) & (edge_batch <= last)
            g = AtomicGraph.from_atoms_list(sub, device=self.device).with_edges(
                graph.edge_index[:, mask] - atom_start[first], graph.shifts[mask]
            )
            results.extend(self._evaluate(g, sub))
        return results


def _identical(a, b) -> bool:
    """Whether two Atoms are bitwise equal in everything ASE's change check compares (cell, periodicity and
    the per-atom arrays named in ``all_changes``: positions, numbers, initial charges and magnetic moments)."""
    if not (np.array_equal(a.pbc, b.pbc) and np.array_equal(a.cell.array, b.cell.array)):
        return False
    for key in all_changes:
        if key in ("cell", "pbc"):
            continue
        if (key in a.arrays) != (key in b.arrays):
            return False
        if key in a.arrays and not np.array_equal(a.arrays[key], b.arrays[key]):
            return False
    return True


def _load(model, device):
    """A private copy of ``model`` (a path, a shipped model's name, or a model), so the caller's is never modified."""
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        return load_model(model_path(model), device=device)
    if not isinstance(model, torch.nn.Module) or not hasattr(model, "spec"):
        raise TypeError("EquiCalc: model must be a model file, a shipped model's name (equicalc models) "
                        f"or an equicalc model, got {type(model).__name__}")
    return copy.deepcopy(model)
