"""Reference data: extended XYZ (or anything ``ase.io.read`` reads) -> labelled graphs.

    frames = read_frames("train.extxyz")              # checked, with file and index in errors
    stats = dataset_statistics(frames, r_max=5.0)     # per-species E0, force RMS, <n>
    data = GraphDataset(frames, r_max=5.0)            # neighbour lists built once
    loader = torch.utils.data.DataLoader(data, batch_size=4, collate_fn=collate)

Labels are looked up under configurable keys, first in ``atoms.info`` /
``atoms.arrays`` and then in the results of an attached calculator (which is
where ``ase.io.read`` puts ``energy``, ``forces`` and ``stress`` of an extxyz
file). Units are ASE's: eV, eV/Å, stress eV/Å^3 with ASE's sign, given as Voigt-6
(xx yy zz yz xz xy) or 3x3. Frames without stress train on energy and forces.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from ase.stress import voigt_6_to_full_3x3_stress

from .graph import AtomicGraph, check_atoms, check_distances

__all__ = [
    "Frame", "read_frames", "read_images", "check_species", "split_indices", "dataset_statistics", "graph_item",
    "GraphDataset", "collate", "Batch",
]

@dataclass
class Frame:
    """One labelled structure: ``atoms`` plus energy (eV), forces (N, 3, eV/Å), stress (3x3, eV/Å^3 or None)."""

    atoms: object
    energy: float
    forces: np.ndarray
    stress: Optional[np.ndarray]
    source: str = ""

    @property
    def n_atoms(self) -> int:
        return len(self.atoms)


def _lookup(atoms, key: str):
    if key in atoms.info:
        return atoms.info[key]
    if key in atoms.arrays:
        return atoms.arrays[key]
    calc = getattr(atoms, "calc", None)
    results = getattr(calc, "results", None) or {}
    if key in results:
        return results[key]
    return None


def _stress_3x3(value, where: str) -> np.ndarray:
    s = np.asarray(value, dtype=float)
    if s.shape == (6,):
        return voigt_6_to_full_3x3_stress(s)
    if s.shape == (9,):
        s = s.reshape(3, 3)
    if s.shape == (3, 3):
        if not np.allclose(s, s.T, atol=1e-8 * max(1.0, np.abs(s).max())):
            raise ValueError(f"{where}: stress is not symmetric")
        return 0.5 * (s + s.T)
    raise ValueError(f"{where}: stress must have 6 (Voigt) or 9 (3x3) values, got shape {s.shape}")


def frame_from_atoms(atoms, where: str, energy_key="energy", forces_key="forces", stress_key="stress",
                     require_stress: bool = False) -> Frame:
    """Labels of one ``Atoms``, checked; ``where`` names it in error messages (file and index)."""
    check_atoms(atoms, what=where)
    energy = _lookup(atoms, energy_key)
    if energy is None:
        raise ValueError(f"{where}: no energy under key {energy_key!r} (set data.energy_key)")
    energy = float(np.asarray(energy).reshape(()))
    if not np.isfinite(energy):
        raise ValueError(f"{where}: energy is NaN or inf")
    forces = _lookup(atoms, forces_key)
    if forces is None:
        raise ValueError(f"{where}: no forces under key {forces_key!r} (set data.forces_key)")
    forces = np.asarray(forces, dtype=float)
    if forces.shape != (len(atoms), 3):
        raise ValueError(f"{where}: forces have shape {forces.shape}, expected ({len(atoms)}, 3)")
    if not np.all(np.isfinite(forces)):
        raise ValueError(f"{where}: forces contain NaN or inf")
    stress = _lookup(atoms, stress_key) if stress_key else None
    if stress is not None:
        stress = _stress_3x3(stress, where)
        if not np.all(np.isfinite(stress)):
            raise ValueError(f"{where}: stress contains NaN or inf")
        if not atoms.pbc.all():
            stress = None  # stress of a non-periodic structure is not defined
    elif require_stress:
        raise ValueError(f"{where}: no stress under key {stress_key!r}")
    atoms = atoms.copy()
    atoms.calc = None
    return Frame(atoms=atoms, energy=energy, forces=forces, stress=stress, source=where)


def read_frames(path: Union[str, os.PathLike], index: str = ":", energy_key: str = "energy",
                forces_key: str = "forces", stress_key: Optional[str] = "stress",
                require_stress: bool = False) -> List[Frame]:
    """Read and check labelled frames from ``path`` (extxyz, or any format ``ase.io.read`` knows).

    A frame without energy or forces, or with NaN/inf in positions or labels, is a
    ``ValueError`` naming the file and the frame's index.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file not found: {path}")
    try:
        images = read_images(path, index)
    except Exception as exc:
        raise ValueError(f"{path}: cannot be read by ase.io.read ({type(exc).__name__}: {exc})") from None
    if not isinstance(images, list):
        images = [images]
    if not images:
        raise ValueError(f"{path}: no frames")
    return [frame_from_atoms(a, f"{path}, frame {k}", energy_key, forces_key, stress_key, require_stress)
            for k, a in enumerate(images)]


def read_images(path, index: str = ":"):
    """``ase.io.read(path, index)`` (``Atoms`` with their labels and ``info``); a compressed extxyz file is
    decompressed into memory first.

    ASE's extxyz reader seeks back to each frame after indexing the file, and every
    backward seek in a compressed stream decompresses it again from its start: the
    time would grow with the square of the file's size (130 s instead of 1.5 s for a
    6 MB ``.extxyz.gz`` of 1666 frames).
    """
    import bz2
    import gzip
    import io
    import lzma

    from ase.io import read
    from ase.io.formats import filetype

    path = os.fspath(path)
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(os.path.splitext(path)[1])
    if opener is None or filetype(path) != "extxyz":
        return read(path, index=index)
    with opener(path, "rt") as fh:
        text = io.StringIO(fh.read())
    return read(text, index=index, format="extxyz")


def split_indices(n: int, sizes: Sequence[Union[int, float]], seed: int = 0) -> List[np.ndarray]:
    """Seeded random split of ``range(n)`` into parts of the given sizes.

    Each size is a count (int >= 0) or a fraction (0 <= float < 1); the first part
    takes whatever is left. Example: ``split_indices(100, [0, 0.1, 5])`` -> 85/10/5.
    """
    counts = []
    for s in sizes[1:]:
        if isinstance(s, float) and 0 <= s < 1:
            counts.append(int(round(s * n)))
        elif float(s) == int(s) and int(s) >= 0:
            counts.append(int(s))
        else:
            raise ValueError(f"split size {s!r} must be a count >= 0 or a fraction in [0, 1)")
    rest = n - sum(counts)
    if rest < 1:
        raise ValueError(f"cannot split {n} frames into parts of sizes {list(sizes[1:])} and keep any for training")
    order = np.random.default_rng(seed).permutation(n)
    parts, start = [np.sort(order[:rest])], rest
    for c in counts:
        parts.append(np.sort(order[start:start + c]))
        start += c
    return parts


def dataset_statistics(frames, r_max: Optional[float] = None, species: Optional[Sequence[str]] = None) -> dict:
    """Statistics of a training set that set the network's normalisation.

    ``frames`` is a list of ``Frame`` (neighbours are then counted within
    ``r_max``, Å), a ``GraphDataset`` or an ``equicalc.preprocessed.PreprocessedDataset``
    (their neighbour lists are used; a preprocessed set is summarised without reading
    its structures).

    Returns a dict with ``species`` (symbols, by atomic number unless given),
    ``energy_shifts`` (per-species reference energies E0, eV, least squares of
    total energies on species counts), ``force_rms`` (eV/Å, RMS of all force
    components), ``avg_num_neighbors`` (mean neighbours within ``r_max`` Å) and
    ``energy_rmse_after_shift`` (eV/atom, what per-species shifts alone leave).
    """
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise ValueError("dataset_statistics: no frames")
        if r_max is None:
            raise ValueError("dataset_statistics: r_max is needed to count neighbours of plain frames")
        frames = GraphDataset(frames, r_max)
    if len(frames) == 0:
        raise ValueError("dataset_statistics: no frames")
    if species is None:
        species = frames.species
    missing = [s for s in frames.species if s not in species]
    if missing:
        raise ValueError(f"the data contain species {missing} that are not in the model's species {list(species)}")
    t = frames.summary(species)
    e0, *_ = np.linalg.lstsq(t["counts"], t["energy"], rcond=None)
    n_atoms = t["counts"].sum(1)
    residual = (t["energy"] - t["counts"] @ e0) / n_atoms
    return {
        "species": list(species),
        "energy_shifts": {s: float(v) for s, v in zip(species, e0)},
        "force_rms": float(np.sqrt(np.sum(t["force_sq"]) / (3 * n_atoms.sum()))),
        "avg_num_neighbors": float(np.sum(t["n_edges"]) / n_atoms.sum()),
        "energy_rmse_after_shift": float(np.sqrt(np.mean(residual ** 2))),
        "num_frames": len(t["energy"]),
        "num_atoms": int(n_atoms.sum()),
    }


def check_species(frames: Sequence[Frame], species: Sequence[str], what: str = "the data") -> None:
    """``ValueError`` naming the first frame (file and index) that holds a species not in ``species``."""
    from ase.data import atomic_numbers, chemical_symbols

    allowed = {atomic_numbers[s] for s in species}
    for f in frames:
        extra = set(np.unique(f.atoms.numbers).tolist()) - allowed
        if extra:
            raise ValueError(f"{what}: {f.source} holds {', '.join(chemical_symbols[z] for z in sorted(extra))}, "
                             f"which the model does not know (its species: {', '.join(species)})")


def graph_item(frame: Frame, r_max: float, index: int = 0, backend: str = "auto") -> dict:
    """One labelled frame as a training item: tensors (float64 geometry and labels) with its neighbour list
    within ``r_max`` Å; ``index`` is its position in its dataset. Atoms closer than 0.1 Å are an error."""
    g = AtomicGraph.from_atoms(frame.atoms).build_neighbors(r_max, backend=backend)
    check_distances(g, frame.source)
    has_stress = frame.stress is not None
    return {
        "positions": g.positions, "numbers": g.numbers, "cell": g.cell[0], "pbc": g.pbc[0],
        "edge_index": g.edge_index, "shifts": g.shifts,
        "energy": torch.tensor(frame.energy, dtype=torch.float64),
        "forces": torch.as_tensor(frame.forces, dtype=torch.float64),
        "stress": torch.as_tensor(frame.stress if has_stress else np.zeros((3, 3)), dtype=torch.float64),
        "has_stress": torch.tensor(has_stress),
        "index": index,
    }


class GraphDataset(torch.utils.data.Dataset):
    """Labelled frames as tensors with their neighbour lists (within ``r_max``, Å) built once."""

    def __init__(self, frames: Sequence[Frame], r_max: float, backend: str = "auto"):
        self.frames = list(frames)
        self.r_max = float(r_max)
        self.items = [graph_item(f, self.r_max, k, backend) for k, f in enumerate(self.frames)]

    def __len__(self) -> int:
        return len(self.items)

    @property
    def species(self) -> List[str]:
        """Symbols of the species present, in order of atomic number."""
        from ase.data import chemical_symbols

        return [chemical_symbols[z] for z in sorted({int(z) for f in self.frames for z in f.atoms.numbers})]

    def summary(self, species: Sequence[str]) -> dict:
        """Per-frame arrays for ``dataset_statistics``: counts of ``species`` (which hold all present),
        energies (eV), summed squared force components ((eV/Å)²), atom and edge counts."""
        from ase.data import atomic_numbers

        zs = [atomic_numbers[s] for s in species]
        return {"counts": np.array([[np.count_nonzero(f.atoms.numbers == z) for z in zs] for f in self.frames], float),
                "energy": np.array([f.energy for f in self.frames]),
                "force_sq": np.array([np.sum(f.forces ** 2) for f in self.frames]),
                "n_atoms": np.array([f.n_atoms for f in self.frames]),
                "n_edges": np.array([it["edge_index"].shape[1] for it in self.items])}

    def frame_sizes(self):
        """Atoms per frame and whether it has a stress label (arrays over the dataset's items)."""
        return (np.array([f.n_atoms for f in self.frames]),
                np.array([f.stress is not None for f in self.frames]))

    def __getitem__(self, k: int) -> dict:
        return self.items[k]


@dataclass
class Batch:
    """A collated batch: the graph plus reference labels (float64, ASE units)."""

    graph: AtomicGraph
    energy: torch.Tensor  # (B,) eV
    forces: torch.Tensor  # (N, 3) eV/Å
    stress: torch.Tensor  # (B, 3, 3) eV/Å^3 (zeros where absent)
    has_stress: torch.Tensor  # (B,) bool
    index: torch.Tensor  # (B,) position of each structure in its dataset

    def to(self, device) -> "Batch":
        return Batch(self.graph.to(device), self.energy.to(device), self.forces.to(device),
                     self.stress.to(device), self.has_stress.to(device), self.index)


def collate(items: Sequence[dict]) -> Batch:
    """Concatenate dataset items into one ``Batch`` (edges offset per structure)."""
    n_atoms = torch.tensor([it["numbers"].shape[0] for it in items], dtype=torch.long)
    offsets = torch.cumsum(n_atoms, 0) - n_atoms
    graph = AtomicGraph(
        positions=torch.cat([it["positions"] for it in items]),
        numbers=torch.cat([it["numbers"] for it in items]),
        cell=torch.stack([it["cell"] for it in items]),
        pbc=torch.stack([it["pbc"] for it in items]),
        batch=torch.repeat_interleave(torch.arange(len(items)), n_atoms),
        n_atoms=n_atoms,
        edge_index=torch.cat([it["edge_index"] + o for it, o in zip(items, offsets.tolist())], dim=1),
        shifts=torch.cat([it["shifts"] for it in items]),
    )
    return Batch(
        graph=graph,
        energy=torch.stack([it["energy"] for it in items]),
        forces=torch.cat([it["forces"] for it in items]),
        stress=torch.stack([it["stress"] for it in items]),
        has_stress=torch.stack([it["has_stress"] for it in items]),
        index=torch.tensor([it["index"] for it in items]),
    )


def frames_by_split(sources: Dict[str, Optional[str]], sizes: Tuple, seed: int, **read_kwargs) -> Dict[str, List[Frame]]:
    """Train/val/test frames from separate files, or split from the training file.

    ``sources`` maps ``"train"``, ``"val"``, ``"test"`` to a path or None; parts
    without a file are split off the training file with ``sizes`` = (val, test)
    (counts or fractions, see ``split_indices``).
    """
    train = read_frames(sources["train"], **read_kwargs)
    out = {"train": train, "val": [], "test": []}
    need = [name for name in ("val", "test") if not sources.get(name)]
    size_of = dict(zip(("val", "test"), sizes))
    if need:
        parts = split_indices(len(train), [0] + [size_of[n] for n in need], seed=seed)
        out["train"] = [train[k] for k in parts[0]]
        for name, idx in zip(need, parts[1:]):
            out[name] = [train[k] for k in idx]
    for name in ("val", "test"):
        if sources.get(name):
            out[name] = read_frames(sources[name], **read_kwargs)
    return out
