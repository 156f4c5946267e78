"""Shared fixtures: small float64 models and random Cu–Zr structures."""
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from equicalc import build_model

torch.set_num_threads(min(2, torch.get_num_threads()))


CUZR = Path(__file__).resolve().parent.parent / "data" / "cuzr"  # the Cu–Zr data, scripts and training runs
ARCHITECTURES = ["nequip", "allegro"]
_SMALL = {
    "nequip": dict(num_features=8, radial_hidden=16),
    "allegro": dict(num_scalar_features=16, num_tensor_features=4, mlp_hidden=16),
}


def small_model(dtype="float64", seed=0, architecture="nequip", **kwargs):
    """A tiny model of the given architecture, fast enough for many evaluations in tests."""
    cfg = dict(species=["Cu", "Zr"], r_max=4.0, l_max=2, num_layers=2, num_basis=6, avg_num_neighbors=12.0,
               scales={"Cu": 0.3, "Zr": 0.4}, shifts={"Cu": -3.5, "Zr": -6.2}, **_SMALL[architecture])
    if "species" in kwargs and "scales" not in kwargs:  # per-species values only for the species it has
        cfg["scales"] = 0.3
    cfg.update(kwargs)
    return build_model(architecture, dtype=dtype, seed=seed, **cfg)


def cuzr_script(name: str):
    """The module of ``data/cuzr/<name>.py`` (the Cu–Zr data scripts are not part of the package)."""
    import importlib.util

    path = CUZR / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"cuzr_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_same_weights(a, b, label=""):
    """Every tensor of ``a``'s state dict equals ``b``'s, bit for bit (pairs in order; ``label`` names the case)."""
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), (label, k)


def random_cuzr(n_rep=2, a=3.3, seed=0, rattle=0.15, zr_fraction=0.36):
    """A rattled Cu–Zr fcc-like supercell with a random triclinic distortion."""
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=a, cubic=True) * (n_rep, n_rep, n_rep)
    atoms.numbers[rng.random(len(atoms)) < zr_fraction] = 40
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.05 * rng.normal(size=(3, 3))), scale_atoms=True)
    atoms.positions += rng.normal(scale=rattle, size=atoms.positions.shape)
    return atoms


def cuzr_cluster(n=8, seed=0):
    """A non-periodic Cu–Zr cluster with sensible interatomic distances."""
    rng = np.random.default_rng(seed)
    pos = []
    while len(pos) < n:
        p = rng.uniform(0, 4.5, 3)
        if all(np.linalg.norm(p - q) > 2.2 for q in pos):
            pos.append(p)
    numbers = [29 if rng.random() > 0.4 else 40 for _ in range(n)]
    return Atoms(numbers=numbers, positions=pos)


@pytest.fixture(scope="session", params=ARCHITECTURES)
def model64(request):
    return small_model(architecture=request.param)


@pytest.fixture(scope="session", params=ARCHITECTURES)
def model32(request):
    return small_model(dtype="float32", architecture=request.param)


def emt_frames(n, seed=0):
    """Rattled, strained Cu–Au fcc cells labelled with ASE's EMT (energy, forces, stress)."""
    from ase.calculators.emt import EMT

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        atoms = bulk("Cu", "fcc", a=3.7, cubic=True) * (2, 2, 2)
        atoms.numbers[rng.random(len(atoms)) < 0.3] = 79
        strain = np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))
        atoms.set_cell(atoms.cell.array @ (0.5 * (strain + strain.T)), scale_atoms=True)
        atoms.positions += rng.normal(scale=0.12, size=atoms.positions.shape)
        atoms.calc = EMT()
        atoms.get_potential_energy(), atoms.get_stress()
        frames.append(atoms)
    return frames


def write_emt_data(folder, n_train, n_val):
    """``train.extxyz`` and ``val.extxyz`` of EMT frames in ``folder``; returns it."""
    from ase.io import write

    write(folder / "train.extxyz", emt_frames(n_train, seed=1))
    write(folder / "val.extxyz", emt_frames(n_val, seed=2))
    return folder


def cu3au(strain=None, moved=0.0):
    """L1₂ Cu3Au (4 atoms, EMT labels): under the symmetric ``strain`` (3x3), or a 2x1x1 supercell with its first
    atom moved by ``moved`` Å along x."""
    atoms = bulk("Cu", "fcc", a=3.75, cubic=True)
    atoms.numbers[0] = 79
    if strain is not None:
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + strain), scale_atoms=True)
    if moved:
        atoms = atoms.repeat((2, 1, 1))
        atoms.positions[0, 0] += moved
    from ase.calculators.emt import EMT

    atoms.calc = EMT()
    atoms.get_potential_energy(), atoms.get_stress()
    return atoms


def write_pinned_frames(path):
    """Pinned frames (``data.pinned``) in ``path``, returned: the unstrained ``cu3au``, a ±1 % uniaxial pair
    and a ±0.05 Å displacement pair."""
    uniaxial = np.diag([0.01, 0.0, 0.0])
    frames = [cu3au(), cu3au(uniaxial), cu3au(-uniaxial), cu3au(moved=0.05), cu3au(moved=-0.05)]
    for atoms, pair in zip(frames, (None, "strain", "strain", "moved", "moved")):
        if pair:
            atoms.info["pair"] = pair
    from ase.io import write

    write(path, frames)
    return path


def training_config(data, run_dir, model=None, **training):
    """A small float64 NequIP training config on ``write_emt_data`` files (``model``: hyperparameters to change)."""
    from equicalc.train import config_from_dict

    hyper = dict(r_max=4.0, l_max=1, num_layers=2, num_features=8, num_basis=6, radial_hidden=16, dtype="float64")
    hyper.update(model or {})
    return config_from_dict({
        "run_dir": str(run_dir),
        "data": {"train": "train.extxyz", "val": "val.extxyz"},
        "model": hyper,
        "loss": {"energy_weight": 10.0, "forces_weight": 1.0, "stress_weight": 10.0},
        "training": {"batch_size": 4, "max_epochs": 3, "lr": 0.01, "num_threads": 2, **training},
    }, base_dir=data)


def cu_au_alloy(seed=0):
    """32 atoms of fcc Cu with 10 random Au (an alloy EMT knows), a = 3.7 Å."""
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True) * (2, 2, 2)
    atoms.numbers[np.random.default_rng(seed).permutation(len(atoms))[:10]] = 79
    return atoms


# a melt-quench of a few hundred steps: melt, ramp and hold, a saved state every 20 steps
SHORT_QUENCH = dict(t_melt=1200.0, t_final=600.0, cooling_rate=3000.0, timestep=4.0, melt_time=0.08, hold_time=0.04,
                    window=100.0, sample_interval=5, trajectory_interval=20, checkpoint_interval=20, seed=1,
                    show_progress=False, relax_steps=0)
