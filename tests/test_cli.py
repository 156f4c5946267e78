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


def _small_model_file(tmp_path):
    from conftest import small_model

    from equicalc import save_model

    path = tmp_path / "m.pth"
    save_model(small_model(dtype="float32"), path)
    return str(path)


def test_quench_command_writes_its_outputs(tmp_path, capsys):
    import json

    out = tmp_path / "q"
    args = ["quench", "--model", _small_model_file(tmp_path), "--atoms", "16", "--t-melt", "1200", "--t-final", "400",
            "--rate", "4000", "--melt-time", "0.04", "--hold-time", "0.04", "--window", "100", "--interval", "20",
            "--output-dir", str(out), "--quiet"]
    assert main(args) == 0
    for name in ("quench.csv", "quench.png", "quench.traj", "summary.json", "rdf.png"):
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["protocol"]["n_atoms"] == 16 and "glass_volume_per_atom" in summary
    printed = capsys.readouterr().out
    assert "glass at 400 K" in printed
    assert "--liquid-range 1200 1800 K lies outside 400–1200 K" in printed  # Cu–Zr defaults: not this protocol


def test_rdf_command(tmp_path, capsys):
    frames = [cuzr_liquid_cell(60, seed=s) for s in range(3)]
    from ase.io import write

    write(tmp_path / "t.extxyz", frames)
    assert main(["rdf", str(tmp_path / "t.extxyz"), "--r-max", "6", "--nbins", "30", "--plot", str(tmp_path / "g.png"),
                 "--csv", str(tmp_path / "g.csv"), "--sq-plot", str(tmp_path / "s.png"), "--quiet"]) == 0
    table = np.loadtxt(tmp_path / "g.csv", delimiter=",", skiprows=1)
    assert table.shape == (30, 5)  # r, total, Cu-Cu, Cu-Zr, Zr-Zr
    assert (tmp_path / "g.png").exists() and (tmp_path / "s.png").exists()
    assert "coordination numbers" in capsys.readouterr().out


def test_phonons_command(tmp_path, capsys):
    out = tmp_path / "ph.png"
    assert main(["phonons", "--model", _small_model_file(tmp_path), "--supercell", "2", "--no-reference",
                 "--output", str(out)]) == 0
    assert out.exists() and "B2 CuZr a =" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["rdf", str(tmp_path / "missing.traj")]) == 2
    assert "equicalc rdf: error: trajectory not found" in capsys.readouterr().err
