"""Phonons with phonopy from any ASE calculator (batched when it is an EquiCalc).

    ph = phonons(b2, calc, supercell=(4, 4, 4))            # a phonopy.Phonopy, force constants produced
    bands = band_structure(ph)                             # along ASE's standard path of the cell
    dos = density_of_states(ph); thermo = thermal_properties(ph)
    plot_phonons({"model": ph, "EAM": ph_ref}, "phonons.png")

Units: displacement Å, frequencies THz (phonopy's default for eV/Å/amu input),
free energy kJ/mol, entropy and heat capacity J/K/mol (phonopy's units).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

__all__ = ["phonons", "band_structure", "density_of_states", "thermal_properties", "frequency_range",
           "plot_phonons"]


def _to_phonopy(atoms):
    from phonopy.structure.atoms import PhonopyAtoms

    return PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=np.asarray(atoms.cell.array),
                        scaled_positions=atoms.get_scaled_positions(), masses=atoms.get_masses())


def _to_ase(cell):
    from ase import Atoms

    return Atoms(symbols=list(cell.symbols), cell=cell.cell, scaled_positions=cell.scaled_positions,
                 masses=cell.masses, pbc=True)


def phonons(atoms, calc, supercell: Sequence[int] = (3, 3, 3), displacement: float = 0.01,
            primitive_matrix="auto", symprec: float = 1e-5, batch: bool = True, show_progress: bool = False):
    """Force constants of ``atoms`` (a periodic unit cell) by finite displacements.

    Args:
        atoms: unit cell (relaxed: phonons are harmonic expansions about a minimum).
        calc: ASE calculator. An ``EquiCalc`` evaluates all displaced supercells
            with one ``calculate_batch`` call unless ``batch=False``.
        supercell: repetitions of the unit cell (3 integers) or a 3x3 supercell matrix.
        displacement: atomic displacement, Å.
        primitive_matrix: phonopy's ``primitive_matrix`` (``"auto"`` finds the primitive cell).
        symprec: symmetry tolerance, Å.
        batch: use ``calc.calculate_batch`` when available.
        show_progress: progress bar over the displaced supercells.

    Returns:
        ``phonopy.Phonopy`` with ``force_constants`` set (run its band structure,
        mesh, DOS and thermal properties, or use the helpers of this module).
    """
    from phonopy import Phonopy
    from tqdm.auto import tqdm

    if not np.all(atoms.pbc):
        raise ValueError("phonons: the unit cell must be periodic in all three directions")
    if not displacement > 0:
        raise ValueError(f"phonons: displacement must be positive, got {displacement}")
    sc = np.asarray(supercell, dtype=int)
    matrix = np.diag(sc) if sc.shape == (3,) else sc
    if matrix.shape != (3, 3) or abs(np.linalg.det(matrix)) < 1:
        raise ValueError(f"phonons: supercell must be 3 integers or a 3x3 integer matrix, got {supercell}")
    ph = Phonopy(_to_phonopy(atoms), supercell_matrix=matrix, primitive_matrix=primitive_matrix, symprec=symprec)
    ph.generate_displacements(distance=displacement)
    cells = [_to_ase(c) for c in ph.supercells_with_displacements]
    if batch and hasattr(calc, "calculate_batch"):
        results = calc.calculate_batch(cells, show_progress=show_progress)
        forces = [r["forces"] for r in results]
    else:
        forces = []
        for cell in tqdm(cells, desc="phonons", disable=not show_progress):
            cell.calc = calc
            forces.append(np.array(cell.get_forces()))
    forces = np.array(forces)
    forces -= forces.mean(axis=1, keepdims=True)  # remove the (tiny) net force of each snapshot
    ph.forces = forces
    ph.produce_force_constants(show_drift=False)
    return ph


def _standard_path(ph, npoints: int):
    """Segments of ASE's standard Brillouin-zone path of the primitive cell, in phonopy's q coordinates."""
    from ase.cell import Cell

    path = Cell(ph.primitive.cell).bandpath(npoints=0)
    special = path.special_points
    segments, labels, connections = [], [], []
    for branch in path.path.split(","):
        names = _split_labels(branch)
        for a, b in zip(names[:-1], names[1:]):
            segments.append(np.linspace(special[a], special[b], npoints))
            labels.append((a, b))
            connections.append(True)
        connections[-1] = False
    flat_labels = [labels[0][0]]
    for k, (a, b) in enumerate(labels):
        if k > 0 and not connections[k - 1]:
            flat_labels[-1] = f"{flat_labels[-1]}|{a}"
        flat_labels.append(b)
    return segments, flat_labels, connections


def _split_labels(branch: str):
    names, k = [], 0
    while k < len(branch):
        j = k + 1
        while j < len(branch) and (branch[j].isdigit() or branch[j].islower()):
            j += 1
        names.append(branch[k:j])
        k = j
    return names


def band_structure(ph, npoints: int = 51, paths=None, labels=None) -> Dict[str, object]:
    """Phonon dispersion along a path.

    Without ``paths``, ASE's standard path for the primitive cell's lattice
    (e.g. Γ–X–M–Γ–R–X|M–R for simple cubic). Returns ``distances`` (list of arrays
    per segment, 1/Å), ``frequencies`` (list of (npoints, n_bands) arrays, THz),
    ``labels`` and ``label_positions`` (for the x axis).
    """
    if paths is None:
        paths, labels, connections = _standard_path(ph, npoints)
    else:
        paths = [np.asarray(p, dtype=float) for p in paths]
        connections = [True] * (len(paths) - 1) + [False]
    ph.run_band_structure(paths, labels=None, path_connections=connections)
    bs = ph.band_structure
    distances = [np.asarray(x) for x in bs.distances]
    # one tick per segment end; at a break the next segment starts where the last ended ("X|M")
    ticks = [float(distances[0][0])] + [float(x[-1]) for x in distances]
    return {"distances": distances, "frequencies": [np.asarray(f) for f in bs.frequencies],
            "labels": labels or [], "label_positions": ticks}


def density_of_states(ph, mesh=(20, 20, 20), sigma: Optional[float] = None) -> Dict[str, np.ndarray]:
    """Total phonon DOS on a q mesh: ``frequency_points`` (THz) and ``total_dos`` (states/THz per cell)."""
    ph.run_mesh(list(mesh), is_gamma_center=True)
    ph.run_total_dos(sigma=sigma)
    dos = ph.total_dos
    return {"frequency_points": np.asarray(dos.frequency_points), "total_dos": np.asarray(dos.dos)}


def thermal_properties(ph, t_min: float = 0.0, t_max: float = 1000.0, t_step: float = 10.0, mesh=(20, 20, 20)):
    """Harmonic free energy (kJ/mol), entropy and heat capacity (J/K/mol) vs temperature (K)."""
    ph.run_mesh(list(mesh), is_gamma_center=True)
    ph.run_thermal_properties(t_min=t_min, t_max=t_max, t_step=t_step, exclude_gamma_acoustic=True)
    tp = ph.thermal_properties
    return {k: np.asarray(getattr(tp, k)) for k in ("temperatures", "free_energy", "entropy", "heat_capacity")}


def frequency_range(ph, npoints: int = 31):
    """Lowest and highest frequency (THz) along the band path; negative = imaginary (unstable) modes."""
    bands = band_structure(ph, npoints=npoints)
    return (float(min(f.min() for f in bands["frequencies"])), float(max(f.max() for f in bands["frequencies"])))


def plot_phonons(results: Dict[str, object], path=None, npoints: int = 51, mesh=(20, 20, 20), title: str = ""):
    """Band structures and DOS of several calculators overlaid (e.g. ``{"model": ph, "EAM": ph_ref}``).

    Returns the matplotlib figure (also saved as PNG when ``path`` is given).
    """
    from ..plotting import new_figure, save_figure

    fig, (ax_b, ax_d) = new_figure(2, size=(10, 4.5), gridspec_kw={"width_ratios": [3, 1]}, sharey=True)
    labels, ticks = [], []
    for k, (name, ph) in enumerate(results.items()):
        color = f"C{k}"
        bands = band_structure(ph, npoints=npoints)
        for x, f in zip(bands["distances"], bands["frequencies"]):
            ax_b.plot(x, f, color=color, lw=1.2, ls="-" if k == 0 else "--")
        labels, ticks = bands["labels"], bands["label_positions"]
        dos = density_of_states(ph, mesh=mesh)
        ax_d.plot(dos["total_dos"], dos["frequency_points"], color=color, lw=1.2, label=name)
    pretty = [lab.replace("G", "Γ") for lab in labels]
    if len(ticks) == len(pretty):
        ax_b.set_xticks(ticks)
        ax_b.set_xticklabels(pretty)
    for t in ticks:
        ax_b.axvline(t, color="0.8", lw=0.6)
    ax_b.axhline(0, color="0.6", lw=0.6)
    ax_b.set_xlim(ticks[0] if ticks else None, ticks[-1] if ticks else None)
    ax_b.set_ylabel("frequency (THz)")
    ax_d.set_xlabel("DOS (states/THz)")
    ax_d.legend(frameon=False)
    if title:
        fig.suptitle(title)
    if path is not None:
        save_figure(fig, path)
    return fig
