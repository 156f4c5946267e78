"""The command line's main job runs end to end."""
import numpy as np
from ase.io import read

from equicalc.cli import cuzr_liquid_cell, main


def test_md_command_writes_trajectory(tmp_path, capsys):
    out = tmp_path / "md.traj"
    assert main(["md", "--atoms", "40", "--steps", "6", "--interval", "2", "--output", str(out), "--quiet"]) == 0
    frames = read(out, ":")
    assert len(frames) == 4  # steps 0, 2, 4, 6
    assert np.isfinite(frames[-1].get_potential_energy())
    assert "ms/step" in capsys.readouterr().out


def test_md_command_npt(tmp_path):
    assert main(["md", "--atoms", "32", "--steps", "4", "--ensemble", "npt", "--output", "", "--quiet"]) == 0


def test_liquid_cell_composition():
    atoms = cuzr_liquid_cell(500)
    assert len(atoms) == 500 and (atoms.numbers == 40).sum() == 180
    assert abs(atoms.get_volume() / 500 - 16.3) < 1e-9
    d = atoms.get_all_distances(mic=True)[np.triu_indices(500, 1)]
    assert d.min() > 1.5  # no overlapping atoms
