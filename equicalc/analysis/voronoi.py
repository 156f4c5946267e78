"""Voronoi polyhedra of every atom: the structural signature of metallic glasses.

    from equicalc.analysis import voronoi
    v = voronoi(frames)                       # Atoms, a list of them, or a trajectory file
    v.indices[0]                              # (N, 4) ⟨n3, n4, n5, n6⟩ of the first frame's atoms
    v.most_frequent("Cu")                     # [((0, 0, 12, 0), 0.14), ((0, 2, 8, 2), 0.09), ...]
    v.icosahedral_fraction("Cu")              # per frame: Cu atoms whose polyhedron is ⟨0,0,12,0⟩
    v.plot()                                  # the fraction against temperature, the leading polyhedra

The Voronoi index ⟨n3, n4, n5, n6⟩ counts the faces of an atom's Voronoi cell with
3, 4, 5 and 6 edges: ⟨0,12,0,0⟩ in fcc, ⟨0,6,0,8⟩ in bcc, ⟨0,0,12,0⟩ at the centre
of an icosahedron. In Cu–Zr glasses the Cu-centred full icosahedra grow as the
liquid cools through Tg.

Thermal displacements split the four-edge vertices of a perfect cell into short
edges and tiny faces; faces smaller than ``area_threshold`` of their cell's
surface and edges shorter than ``edge_threshold`` (Å) are not counted (OVITO's
conventions). The tessellation is voro++'s, through pyscal3 (a dependency,
2 MB), or, for the radical (radius-weighted) tessellation that part of the Cu–Zr
literature uses, through OVITO (``pip install "equicalc[ovito]"``, about 500 MB
with its Qt libraries). The two give the same indices atom by atom on the same
settings (``tests/test_voronoi.py``).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from .rdf import load_frames

ICOSAHEDRON = (0, 0, 12, 0)
BACKENDS = ("pyscal3", "ovito")
MIN_WIDTH = 10.0  # Å: cells this wide or wider are tessellated without periodic images


def voronoi_indices(atoms, area_threshold: float = 0.01, edge_threshold: float = 0.1, backend: str = "pyscal3",
                    radii: Optional[Dict[str, float]] = None) -> np.ndarray:
    """The Voronoi index ⟨n3, n4, n5, n6⟩ of every atom of ``atoms``: an (N, 4) int array.

    Args:
        atoms: a periodic ``Atoms`` (any cell shape; positions may lie outside the cell).
        area_threshold: faces below this fraction of their cell's surface area are not counted.
        edge_threshold: edges shorter than this (Å) are not counted in their face's edge number.
        backend: ``"pyscal3"`` or ``"ovito"``.
        radii: atomic radii (Å) per element for the radical tessellation (``backend="ovito"`` only),
            e.g. ``{"Cu": 1.28, "Zr": 1.60}``; None for the plain Voronoi tessellation.
    """
    if not 0.0 <= area_threshold < 0.5:
        raise ValueError(f"voronoi: area_threshold must be a fraction in [0, 0.5), got {area_threshold!r}")
    if not 0.0 <= edge_threshold < 1.0:
        raise ValueError(f"voronoi: edge_threshold must be in [0, 1) Å, got {edge_threshold!r}")
    if backend not in BACKENDS:
        raise ValueError(f"voronoi: backend must be one of {BACKENDS}, got {backend!r}")
    if not all(atoms.pbc) or atoms.cell.rank < 3:
        raise ValueError("voronoi: the structure must be periodic in all three directions with a full cell "
                         "(put a cluster in a box with vacuum around it)")
    if len(atoms) < 2:
        raise ValueError("voronoi: needs at least two atoms")
    if radii is not None and backend != "ovito":
        raise ValueError("voronoi: the radical tessellation (radii) needs backend='ovito'")
    if backend == "ovito":
        return _ovito_indices(atoms, area_threshold, edge_threshold, radii)
    return _pyscal3_indices(atoms, area_threshold, edge_threshold)


def _pyscal3_indices(atoms, area_threshold: float, edge_threshold: float) -> np.ndarray:
    work = atoms.copy()
    work.calc = None
    work.wrap()
    _tessellate(work)
    cells = zip(_per_atom(work, "pyscal_vertex_numbers"), _per_atom(work, "pyscal_vertex_positions"))
    return np.array([_cell_index(faces, vertices, area_threshold, edge_threshold) for faces, vertices in cells])


def _tessellate(atoms) -> None:
    """pyscal3's Voronoi tessellation of the wrapped, periodic ``atoms``, its per-atom results stored on them.

    pyscal3's ``find_neighbors`` repeats a cell of under 200 atoms 2×2×2 before it tessellates (a rule for
    its adaptive cutoffs), which makes the 108-atom cells of ``equicalc quench`` cost 8 times their atoms.
    voro++'s periodic container needs no images, so a cell at least ``MIN_WIDTH`` wide goes to it
    directly: the same indices atom by atom (``tests/test_voronoi.py``), about 9 times faster.
    """
    from pyscal3 import find_neighbors

    try:  # pyscal3's internals (4.1); a pyscal3 laid out otherwise takes the public path
        from pyscal3 import _bridge, csystem
        from pyscal3.neighbors import _reset_neighbors
        to_dict, box, to_atoms, bonds = (_bridge.atoms_to_dict, _bridge.get_box_params, _bridge.dict_to_atoms,
                                         _bridge.store_bond_arrays)
        tessellate = csystem.get_all_neighbors_voronoi
    except (ImportError, AttributeError):
        tessellate = None
    if tessellate is None or len(atoms) >= 200 or perpendicular_widths(atoms.cell).min() < MIN_WIDTH:
        find_neighbors(atoms, method="voronoi")
        return
    d = to_dict(atoms)
    _reset_neighbors(d)
    tessellate(d, 0.0, *box(atoms), 1)
    to_atoms(d, atoms, nreal=len(atoms))
    bonds(atoms)


def perpendicular_widths(cell) -> np.ndarray:
    """The distances (Å) between opposite faces of ``cell``: one over the lengths of its reciprocal vectors."""
    return 1.0 / np.linalg.norm(cell.reciprocal(), axis=1)


def _per_atom(atoms, key: str) -> list:
    """pyscal3's per-atom data: ragged ones are in ``info``, those of one shape for all atoms in ``arrays``."""
    return atoms.info[key] if key in atoms.info else atoms.arrays[key].tolist()


def _cell_index(faces: list, vertices, area_threshold: float, edge_threshold: float) -> np.ndarray:
    """⟨n3, n4, n5, n6⟩ of one cell from voro++'s face list (per face: its vertex count, then the vertices
    in order around it) and its vertex positions (Å)."""
    starts, ends, face_of = [], [], []
    k = n_faces = 0
    while k < len(faces):
        n, ring = faces[k], faces[k + 1:k + 1 + faces[k]]
        starts += ring
        ends += ring[1:] + ring[:1]
        face_of += [n_faces] * n
        n_faces += 1
        k += n + 1
    vertices = np.asarray(vertices, dtype=float)
    a, b, face_of = vertices[starts], vertices[ends], np.asarray(face_of)
    vector_area = np.zeros((n_faces, 3))
    np.add.at(vector_area, face_of, np.cross(a, b))  # 2 × the face's vector area (closed planar polygon)
    area = 0.5 * np.linalg.norm(vector_area, axis=1)
    edges = np.bincount(face_of, weights=np.linalg.norm(b - a, axis=1) > edge_threshold, minlength=n_faces)
    kept = edges[area > area_threshold * area.sum()].astype(int)
    return np.bincount(kept, minlength=7)[3:7]


def _ovito_indices(atoms, area_threshold: float, edge_threshold: float, radii: Optional[Dict[str, float]]) -> np.ndarray:
    try:
        from ovito.io.ase import ase_to_ovito
        from ovito.modifiers import VoronoiAnalysisModifier
        from ovito.pipeline import Pipeline, StaticSource
    except ImportError:
        raise ImportError("voronoi: backend='ovito' needs OVITO: pip install \"equicalc[ovito]\"") from None
    data = ase_to_ovito(atoms)
    if radii is not None:
        missing = sorted(set(atoms.get_chemical_symbols()) - set(radii))
        if missing:
            raise ValueError(f"voronoi: radii has no value for {missing}")
        for particle_type in data.particles_.particle_types_.types_:
            particle_type.radius = float(radii[particle_type.name])
    pipeline = Pipeline(source=StaticSource(data=data))
    pipeline.modifiers.append(VoronoiAnalysisModifier(compute_indices=True, use_radii=radii is not None,
                                                      relative_face_threshold=area_threshold,
                                                      edge_threshold=edge_threshold))
    counts = np.asarray(pipeline.compute().particles["Voronoi Index"])  # column k: faces with k + 1 edges
    counts = np.pad(counts, ((0, 0), (0, max(0, 6 - counts.shape[1]))))
    return counts[:, 2:6].astype(int)


@dataclass
class VoronoiResult:
    """Voronoi indices of a sequence of frames.

    Attributes:
        indices: per frame, the (N, 4) ⟨n3, n4, n5, n6⟩ of its atoms.
        symbols: per frame, the (N,) chemical symbols.
        temperatures: per frame, its temperature (K) where known (``atoms.info["temperature"]`` or
            given), else NaN.
    """

    indices: List[np.ndarray]
    symbols: List[np.ndarray]
    temperatures: np.ndarray

    def _select(self, centre: Optional[str], frames=None) -> np.ndarray:
        chosen = range(len(self.indices)) if frames is None else frames
        rows = [self.indices[k][self._centres(k, centre)] for k in chosen]
        return np.concatenate(rows) if rows else np.zeros((0, 4), dtype=int)

    def _centres(self, k: int, centre: Optional[str]) -> np.ndarray:
        if centre is None:
            return np.ones(len(self.symbols[k]), dtype=bool)
        if not any(np.any(s == centre) for s in self.symbols):
            raise ValueError(f"voronoi: no {centre!r} atoms; the frames hold {sorted(self.species)}")
        return self.symbols[k] == centre

    @property
    def species(self) -> set:
        return set(np.concatenate(self.symbols).tolist())

    @property
    def default_centre(self) -> str:
        """The centre species to show: Cu (the Cu–Zr glasses' icosahedra) when present, else the first by name."""
        return "Cu" if "Cu" in self.species else sorted(self.species)[0]

    def most_frequent(self, centre: Optional[str] = None, n: int = 10, frames=None) -> list:
        """The ``n`` most frequent indices around ``centre`` atoms (all atoms for None) over ``frames``
        (indices into the frame list; all by default): ``[((n3, n4, n5, n6), fraction), ...]``."""
        rows = self._select(centre, frames)
        if len(rows) == 0:
            return []
        counts = Counter(map(tuple, rows.tolist()))
        return [(index, count / len(rows)) for index, count in counts.most_common(n)]

    def fraction(self, index, centre: Optional[str] = None) -> np.ndarray:
        """Per frame, the fraction of ``centre`` atoms whose polyhedron is ``index`` (a 4-tuple); NaN for a frame
        without ``centre`` atoms."""
        target = np.asarray(index)
        out = []
        for k in range(len(self.indices)):
            rows = self.indices[k][self._centres(k, centre)]
            out.append(np.all(rows == target, axis=1).mean() if len(rows) else np.nan)
        return np.array(out)

    def icosahedral_fraction(self, centre: str = "Cu") -> np.ndarray:
        """Per frame, the fraction of ``centre`` atoms at the centre of a full icosahedron ⟨0,0,12,0⟩."""
        return self.fraction(ICOSAHEDRON, centre)

    def plot(self, centre: str = "Cu", n: int = 8, path=None, axes=None):
        """Two panels: the fraction of ``centre`` atoms in full icosahedra against temperature (mean and standard
        error of the frames at each temperature; against the frame number when temperatures are unknown), and
        the ``n`` leading polyhedra per species at the lowest temperature (the last frame when unknown).

        ``axes``: a pair of axes to draw on (else a new figure). Returns the ``Figure``, saved to ``path`` if given.
        """
        from ..plotting import new_figure, save_figure

        if axes is None:
            fig, axes = new_figure(ncols=2, size=(10.0, 4.0))
        left, right = axes
        ico = self.icosahedral_fraction(centre)
        known = np.isfinite(self.temperatures)
        if known.all():
            t, mean, error = _by_temperature(self.temperatures, ico)
            left.errorbar(t, mean, yerr=error, fmt="o-", ms=3, lw=1, capsize=0)
            left.set_xlabel("temperature (K)")
            glass = list(np.flatnonzero(self.temperatures == self.temperatures.min()))
        else:
            left.plot(np.arange(len(ico)), ico, "o-", ms=3)
            left.set_xlabel("frame")
            glass = [len(self.indices) - 1]
        left.set_ylabel(f"{centre}-centred ⟨0,0,12,0⟩ fraction")
        for k, species in enumerate(sorted(self.species)):
            top = self.most_frequent(species, n, frames=glass)
            y = np.arange(len(top)) + 0.4 * k
            right.barh(y, [f for _, f in top], height=0.4, label=f"{species}-centred")
            for yk, (index, _) in zip(y, top):
                right.text(0.002, yk, "⟨{},{},{},{}⟩".format(*index), va="center", fontsize=7)
        right.invert_yaxis()
        right.set_yticks([])
        right.set_xlabel("fraction of centre atoms" + (f" at {self.temperatures.min():.0f} K" if known.all() else ""))
        right.legend(frameon=False, fontsize=8)
        if path is not None:
            save_figure(left.figure, path)
        return left.figure

    @classmethod
    def concatenate(cls, results: list) -> "VoronoiResult":
        """The frames of several results (e.g. the replicas of an ensemble) as one."""
        return cls([i for r in results for i in r.indices], [s for r in results for s in r.symbols],
                   np.concatenate([r.temperatures for r in results]))


def _by_temperature(temperatures: np.ndarray, values: np.ndarray):
    """Unique temperatures, and the mean and standard error (0 for one value) of ``values`` at each."""
    t = np.unique(temperatures)
    groups = [values[temperatures == tk] for tk in t]
    mean = np.array([g.mean() for g in groups])
    error = np.array([g.std(ddof=1) / np.sqrt(len(g)) if len(g) > 1 else 0.0 for g in groups])
    return t, mean, error


def voronoi(frames, area_threshold: float = 0.01, edge_threshold: float = 0.1, backend: str = "pyscal3",
            radii: Optional[Dict[str, float]] = None, temperatures=None, index=":",
            show_progress: bool = False) -> VoronoiResult:
    """Voronoi indices of every atom of every frame (``Atoms``, a list of them, or a trajectory file).

    ``temperatures`` (K, one per frame) label the frames for ``plot``; by default each frame's
    ``atoms.info["temperature"]``. See ``voronoi_indices`` for the other arguments.
    """
    from tqdm.auto import tqdm

    frames = load_frames(frames, index)
    if temperatures is None:
        temperatures = [a.info.get("temperature", np.nan) for a in frames]
    temperatures = np.asarray(temperatures, dtype=float)
    if temperatures.shape != (len(frames),):
        raise ValueError(f"voronoi: {len(temperatures)} temperatures for {len(frames)} frames")
    indices = [voronoi_indices(a, area_threshold, edge_threshold, backend, radii)
               for a in tqdm(frames, desc="voronoi", unit="frame", disable=not show_progress)]
    return VoronoiResult(indices, [np.array(a.get_chemical_symbols()) for a in frames], temperatures)
