"""Preprocessed data sets on disk: labelled frames and their neighbour lists in one HDF5 file.

    preprocess("train.extxyz", "train.h5", r_max=5.0)   # streams: memory stays flat
    data = PreprocessedDataset("train.h5")             # graphs read lazily, one item at a time

A training config names the ``.h5`` file as ``data.train`` (``val``, ``test``)
and training reads each structure when its batch needs it, so peak memory does
not grow with the data set. HDF5 (h5py) is a single portable file with random
access to slices; the neighbour lists are chunked and compressed (LZF), the
per-frame summaries (energies, atom and edge counts, species counts) are read
once when a set is opened and give the training statistics without touching the
structures.

The file holds ragged arrays, concatenated, with per-frame offsets::

    attrs:  format, format_version, r_max, species, frames, content_sha256, source
    frames/ energy (F,) eV, cell (F,3,3) Å, pbc (F,3), stress (F,3,3) eV/Å³, has_stress (F,),
            n_atoms (F,), atom_start (F,), n_edges (F,), edge_start (F,),
            species_counts (F,S), force_sq (F,) sum of squared force components (eV/Å)²
    atoms/  positions (A,3) Å, numbers (A,), forces (A,3) eV/Å
    edges/  index (E,2) structure-local centre and neighbour, shifts (E,3) integer cell shifts
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from .data import frame_from_atoms, graph_item
from .files import atomic_write, check_output

__all__ = ["preprocess", "PreprocessedDataset", "merge_preprocessed", "is_preprocessed", "FORMAT_NAME"]

FORMAT_NAME = "equicalc-graphs"
FORMAT_VERSION = 1
_CHUNK_FRAMES = 256  # frames gathered before each write

_FRAME_FIELDS = {  # name: (dtype, shape of one frame)
    "energy": ("f8", ()), "cell": ("f8", (3, 3)), "pbc": ("?", (3,)), "stress": ("f8", (3, 3)),
    "has_stress": ("?", ()), "n_atoms": ("i8", ()), "atom_start": ("i8", ()), "n_edges": ("i8", ()),
    "edge_start": ("i8", ()), "force_sq": ("f8", ()),
}
_ATOM_FIELDS = {"positions": ("f8", (3,)), "numbers": ("i2", ()), "forces": ("f8", (3,))}
_EDGE_FIELDS = {"index": ("i4", (2,)), "shifts": ("i2", (3,))}


def is_preprocessed(path: Union[str, os.PathLike]) -> bool:
    """Whether ``path`` is an HDF5 file (by its signature, not its name)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False


def _create(h5, species: Sequence[str]) -> None:
    groups = {"frames": _FRAME_FIELDS, "atoms": _ATOM_FIELDS, "edges": _EDGE_FIELDS}
    for group, fields in groups.items():
        for name, (dtype, shape) in fields.items():
            compress = {"compression": "lzf", "shuffle": True} if group == "edges" or name == "numbers" else {}
            h5.create_dataset(f"{group}/{name}", shape=(0, *shape), maxshape=(None, *shape), dtype=dtype,
                              chunks=(8192 if group != "frames" else 1024, *shape), **compress)
    h5.create_dataset("frames/species_counts", shape=(0, len(species)), maxshape=(None, len(species)), dtype="i4",
                      chunks=(1024, len(species)))


def _append(h5, group: str, arrays: dict, digest) -> None:
    for name, values in arrays.items():
        ds = h5[f"{group}/{name}"]
        values = np.ascontiguousarray(values, dtype=ds.dtype)
        n = ds.shape[0]
        ds.resize(n + len(values), axis=0)
        ds[n:] = values
        digest.update(values.tobytes())


class _Writer:
    """Frames gathered in memory a chunk at a time and appended to the file's datasets."""

    def __init__(self, h5, species: Sequence[str]):
        from ase.data import atomic_numbers

        self.h5, self.species = h5, list(species)
        self.zs = np.array([atomic_numbers[s] for s in self.species])
        self.digest = hashlib.sha256()
        self.n_frames = self.n_atoms = self.n_edges = 0
        self.pending = []
        _create(h5, self.species)

    def add(self, item: dict) -> None:
        self.pending.append(item)
        if len(self.pending) >= _CHUNK_FRAMES:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        items, self.pending = self.pending, []
        frames = {key: np.stack([it[key] for it in items]) for key in ("energy", "cell", "pbc", "stress", "has_stress")}
        frames.update(n_atoms=[len(it["numbers"]) for it in items], n_edges=[len(it["index"]) for it in items],
                      force_sq=[float(np.sum(it["forces"] ** 2)) for it in items])
        counts = np.array([[np.count_nonzero(it["numbers"] == z) for z in self.zs] for it in items])
        self.write_block(frames, counts, {k: np.concatenate([it[k] for it in items]) for k in _ATOM_FIELDS},
                         {k: np.concatenate([it[k] for it in items]) for k in _EDGE_FIELDS})

    def write_block(self, frames: dict, counts, atoms: dict, edges: dict) -> None:
        """Append consecutive frames: per-frame fields (offsets are set here), species counts, atom and edge arrays."""
        n_atoms, n_edges = np.asarray(frames["n_atoms"]), np.asarray(frames["n_edges"])
        frames = dict(frames, atom_start=self.n_atoms + np.cumsum(n_atoms) - n_atoms,
                      edge_start=self.n_edges + np.cumsum(n_edges) - n_edges)
        _append(self.h5, "frames", {k: frames[k] for k in _FRAME_FIELDS}, self.digest)
        _append(self.h5, "frames", {"species_counts": counts}, self.digest)
        _append(self.h5, "atoms", atoms, self.digest)
        _append(self.h5, "edges", edges, self.digest)
        self.n_frames += len(n_atoms)
        self.n_atoms += int(n_atoms.sum())
        self.n_edges += int(n_edges.sum())


def _graph_item(frame, r_max: float) -> dict:
    """One frame's arrays as the file stores them: ``equicalc.data.graph_item``'s, as numpy."""
    item = {k: v.numpy() if torch.is_tensor(v) else v for k, v in graph_item(frame, r_max).items()}
    if len(item["shifts"]) and np.abs(item["shifts"]).max() > np.iinfo(np.int16).max:
        raise ValueError(f"{frame.source}: cell shifts beyond {np.iinfo(np.int16).max} cells (a cell far smaller "
                         "than the cutoff)")
    item["index"] = item.pop("edge_index").T
    return item


def preprocess(source: Union[str, os.PathLike, Sequence], output: Union[str, os.PathLike], r_max: float,
               species: Optional[Sequence[str]] = None, energy_key: str = "energy", forces_key: str = "forces",
               stress_key: Optional[str] = "stress", overwrite: bool = False, show_progress: bool = True) -> dict:
    """Write labelled frames and their neighbour lists (within ``r_max``, Å) to an HDF5 file ``output``.

    Args:
        source: a file that ``ase.io.iread`` reads (frames are streamed, one at a time) or a list of ``Atoms``.
        species: chemical symbols of the model; default: those of the first 1000 frames, in order of atomic
            number. A frame with another species is an error naming it.
        energy_key, forces_key, stress_key: where the labels are (as in a training config's ``data:``).
        overwrite: replace an existing ``output``.

    The file is written to a temporary name and renamed when complete. Returns its summary
    (frames, atoms, edges, species, r_max, bytes).
    """
    from ase.io import iread
    from tqdm.auto import tqdm

    if not r_max > 0:
        raise ValueError(f"preprocess: r_max must be > 0 Å, got {r_max}")
    output = check_output(output, "preprocessed file")
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; choose another output or overwrite it")
    name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<atoms>"
    if isinstance(source, (str, os.PathLike)) and not os.path.isfile(source):
        raise FileNotFoundError(f"data file not found: {source}")
    images = iread(os.fspath(source)) if isinstance(source, (str, os.PathLike)) else iter(source)
    if species is None:
        species = _species_of(iread(os.fspath(source), index=":1000") if name != "<atoms>" else source)
    from .nn.common import normalize_species

    species = normalize_species(species)
    from ase.data import atomic_numbers

    allowed = {atomic_numbers[s] for s in species}

    def write(tmp):
        import h5py

        with h5py.File(tmp, "w") as h5:
            writer = _Writer(h5, species)
            for k, atoms in enumerate(tqdm(images, desc="preprocess", unit=" frames", disable=not show_progress)):
                frame = frame_from_atoms(atoms, f"{name}, frame {k}", energy_key, forces_key, stress_key)
                extra = set(np.unique(frame.atoms.numbers).tolist()) - allowed
                if extra:
                    raise ValueError(f"{frame.source} holds atomic numbers {sorted(extra)}, not among the species "
                                     f"{', '.join(species)}")
                writer.add(_graph_item(frame, r_max))
            writer.flush()
            if writer.n_frames == 0:
                raise ValueError(f"{name}: no frames")
            h5.attrs.update(format=FORMAT_NAME, format_version=FORMAT_VERSION, r_max=float(r_max),
                            species=list(species), frames=writer.n_frames, source=os.path.basename(name),
                            content_sha256=writer.digest.hexdigest())

    atomic_write(output, write)
    data = PreprocessedDataset(output)
    return data.describe()


def _species_of(images) -> list:
    from ase.data import chemical_symbols

    present = sorted({int(z) for atoms in images for z in np.unique(atoms.numbers)})
    return [chemical_symbols[z] for z in present]


class PreprocessedDataset(torch.utils.data.Dataset):
    """A preprocessed file as a dataset of graph items (the same items as ``equicalc.data.GraphDataset``'s).

    Only the per-frame summaries are held in memory; each ``dataset[k]`` reads its
    structure from the file. ``indices`` selects frames (a split); item ``k`` is
    the file's frame ``indices[k]``. The file is opened in each process that reads
    it (safe under DDP and DataLoader workers).
    """

    def __init__(self, path: Union[str, os.PathLike], indices: Optional[Sequence[int]] = None):
        import h5py

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"preprocessed file not found: {self.path}")
        if not is_preprocessed(self.path):
            raise ValueError(f"{self.path} is not an HDF5 file (make one with `equicalc preprocess`)")
        with h5py.File(self.path, "r") as h5:
            attrs = dict(h5.attrs)
            if attrs.get("format") != FORMAT_NAME:
                raise ValueError(f"{self.path} is an HDF5 file but not an equicalc preprocessed set "
                                 f"(format {attrs.get('format')!r})")
            if int(attrs.get("format_version", -1)) > FORMAT_VERSION:
                raise ValueError(f"{self.path} has format version {attrs['format_version']}, newer than this "
                                 f"equicalc reads ({FORMAT_VERSION}); upgrade equicalc")
            self.frames_table = {name: h5[f"frames/{name}"][()] for name in h5["frames"]}
        self.r_max = float(attrs["r_max"])
        self.species = [str(s) for s in attrs["species"]]
        self.content_sha256 = str(attrs["content_sha256"])
        n = len(self.frames_table["energy"])
        self.indices = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= n):
            raise IndexError(f"{self.path}: frame indices outside 0..{n - 1}")
        self._h5, self._pid = None, None

    def subset(self, indices: Sequence[int]) -> "PreprocessedDataset":
        """The frames at positions ``indices`` of this dataset (a split), sharing its summaries."""
        out = object.__new__(PreprocessedDataset)
        out.__dict__.update(self.__dict__)
        out.indices = self.indices[np.asarray(indices, dtype=np.int64)]
        out._h5, out._pid = None, None
        return out

    def __len__(self) -> int:
        return len(self.indices)

    def _file(self):
        import h5py

        if self._h5 is None or self._pid != os.getpid():
            self._h5, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._h5

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_h5"] = state["_pid"] = None
        return state

    def __getitem__(self, k: int) -> dict:
        f, t = int(self.indices[k]), self.frames_table
        h5 = self._file()
        a0, na, e0, ne = t["atom_start"][f], t["n_atoms"][f], t["edge_start"][f], t["n_edges"][f]
        atoms, edges = h5["atoms"], h5["edges"]
        return {
            "positions": torch.from_numpy(atoms["positions"][a0:a0 + na]),
            "numbers": torch.from_numpy(atoms["numbers"][a0:a0 + na].astype(np.int64)),
            "cell": torch.from_numpy(t["cell"][f]), "pbc": torch.from_numpy(t["pbc"][f]),
            "edge_index": torch.from_numpy(edges["index"][e0:e0 + ne].T.astype(np.int64)),
            "shifts": torch.from_numpy(edges["shifts"][e0:e0 + ne].astype(np.int64)),
            "energy": torch.tensor(t["energy"][f], dtype=torch.float64),
            "forces": torch.from_numpy(atoms["forces"][a0:a0 + na]),
            "stress": torch.from_numpy(t["stress"][f]),
            "has_stress": torch.tensor(bool(t["has_stress"][f])),
            "index": k,
        }

    def summary(self, species: Sequence[str]) -> dict:
        """Per-frame arrays for ``equicalc.data.dataset_statistics``: counts of ``species`` (which hold all
        present), energies (eV), summed squared force components, atom and edge counts."""
        t, rows = self.frames_table, self.indices
        counts = np.zeros((len(rows), len(species)))
        for j, s in enumerate(self.species):
            counts[:, list(species).index(s)] = t["species_counts"][rows, j]
        return {"counts": counts, "energy": t["energy"][rows], "force_sq": t["force_sq"][rows],
                "n_atoms": t["n_atoms"][rows], "n_edges": t["n_edges"][rows]}

    def frame_sizes(self):
        """Atoms per frame and whether it has a stress label (arrays over the dataset's items)."""
        return self.frames_table["n_atoms"][self.indices], self.frames_table["has_stress"][self.indices]

    def describe(self) -> dict:
        t = self.frames_table
        return {"path": str(self.path), "frames": len(self), "atoms": int(t["n_atoms"][self.indices].sum()),
                "edges": int(t["n_edges"][self.indices].sum()), "species": self.species, "r_max": self.r_max,
                "bytes": self.path.stat().st_size}

    def check(self, r_max: float, species: Optional[Sequence[str]], what: str, against: str = "the model") -> None:
        """``ValueError`` when this file was built for another cutoff or species set than ``against``'s."""
        if abs(self.r_max - float(r_max)) > 1e-9:
            raise ValueError(f"{what}: {self.path} holds neighbour lists within {self.r_max:g} Å, not the "
                             f"{float(r_max):g} Å of {against}; preprocess it again with --r-max {float(r_max):g}")
        if species is not None and list(species) != self.species:
            raise ValueError(f"{what}: {self.path} was preprocessed for species {self.species}, not the "
                             f"{list(species)} of {against}; preprocess it again with --species {' '.join(species)}")


def merge_preprocessed(paths: Sequence[Union[str, os.PathLike]], output: Union[str, os.PathLike],
                       overwrite: bool = False, show_progress: bool = True) -> dict:
    """One preprocessed file holding the frames of ``paths`` in order (same r_max and species).

    Files preprocessed in parallel (one per shard of a large data set) become one
    training set this way; a file named several times is repeated.
    """
    import h5py
    from tqdm.auto import tqdm

    if not paths:
        raise ValueError("merge_preprocessed: no input files")
    parts = [PreprocessedDataset(p) for p in paths]
    first = parts[0]
    for p in parts[1:]:
        p.check(first.r_max, first.species, f"merging into {output}", against=str(first.path))
    output = check_output(output, "merged file")
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; choose another output or overwrite it")

    def write(tmp):
        with h5py.File(tmp, "w") as h5:
            writer = _Writer(h5, first.species)
            for part in tqdm(parts, desc="merge", unit=" files", disable=not show_progress):
                with h5py.File(part.path, "r") as src:
                    _copy_frames(src, writer)
            h5.attrs.update(format=FORMAT_NAME, format_version=FORMAT_VERSION, r_max=first.r_max,
                            species=first.species, frames=writer.n_frames,
                            source=",".join(os.path.basename(str(p)) for p in paths),
                            content_sha256=writer.digest.hexdigest())

    atomic_write(output, write)
    return PreprocessedDataset(output).describe()


def _copy_frames(src, writer: _Writer) -> None:
    """Append every frame of an open preprocessed file to ``writer``, a block of frames at a time."""
    t = {name: src[f"frames/{name}"] for name in src["frames"]}
    n = t["energy"].shape[0]
    for start in range(0, n, _CHUNK_FRAMES * 16):
        stop = min(n, start + _CHUNK_FRAMES * 16)
        block = {name: ds[start:stop] for name, ds in t.items()}
        a0, a1 = block["atom_start"][0], block["atom_start"][-1] + block["n_atoms"][-1]
        e0, e1 = block["edge_start"][0], block["edge_start"][-1] + block["n_edges"][-1]
        writer.write_block(block, block["species_counts"], {k: src[f"atoms/{k}"][a0:a1] for k in _ATOM_FIELDS},
                           {k: src[f"edges/{k}"][e0:e1] for k in _EDGE_FIELDS})
