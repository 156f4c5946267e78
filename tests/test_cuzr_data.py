"""The shipped Cu–Zr reference data: readable, labelled, and reproduced by the EAM it came from."""
from pathlib import Path

import numpy as np
import pytest

from equicalc.cli import eam_calculator
from equicalc.data import read_frames

CUZR = Path(__file__).resolve().parent.parent / "data" / "cuzr"


def test_splits_are_complete_and_labelled():
    import gzip

    with gzip.open(CUZR / "train.extxyz.gz") as fh:
        counts = {"train": sum(1 for line in fh if line.startswith(b"Lattice="))}
    for split in ("val", "test"):
        frames = read_frames(CUZR / f"{split}.extxyz.gz")
        counts[split] = len(frames)
        assert all(f.stress is not None for f in frames)
        assert all(64 <= f.n_atoms <= 250 for f in frames)
        assert {f.atoms.info["config_type"] for f in frames} <= {
            "liquid", "liquid_composition", "quench", "glass", "crystal", "strained", "surface"}
    assert counts == {"train": 1168, "val": 146, "test": 146}


@pytest.mark.parametrize("backend", ["lammps", "matscipy"])
def test_labels_match_the_mendelev_eam(backend):
    calc = eam_calculator(backend)
    if calc is None:
        pytest.skip(f"the EAM reference ({backend}) is not installed (pip install -e '.[reference]')")
    frames = read_frames(CUZR / "test.extxyz.gz")
    for f in frames[::30]:
        atoms = f.atoms.copy()
        atoms.calc = calc
        assert abs(atoms.get_potential_energy() - f.energy) / f.n_atoms < 1e-7
        np.testing.assert_allclose(atoms.get_forces(), f.forces, atol=1e-4)
        np.testing.assert_allclose(atoms.get_stress(voigt=False), f.stress, atol=1e-6)


def test_eam_backend_choice():
    with pytest.raises(ValueError, match="backend"):
        eam_calculator("gulp")
