"""The command line's main job runs end to end."""
import numpy as np
import pytest
from ase.io import read

from equicalc.cli import main
from equicalc.systems import random_alloy


def test_md_command_writes_trajectory(tmp_path, capsys):
    out = tmp_path / "md.traj"
    assert main(["md", "--atoms", "40", "--steps", "6", "--interval", "2", "--output", str(out), "--quiet"]) == 0
    frames = read(out, ":")
    assert [f.get_chemical_formula() for f in frames] == ["Cu26Zr14"] * 4  # steps 0, 2, 4, 6
    from equicalc import EquiCalc

    last = frames[-1].copy()
    last.calc = EquiCalc("cuzr")  # the frames carry the shipped model's energies
    assert last.get_potential_energy() == pytest.approx(frames[-1].get_potential_energy(), rel=1e-6)  # float32
    printed = capsys.readouterr().out
    assert "with the shipped model 'cuzr'" in printed and "ms/step" in printed


def test_md_command_npt_moves_the_cell(tmp_path, capsys):
    out = tmp_path / "npt.traj"
    assert main(["md", "--atoms", "32", "--steps", "20", "--ensemble", "npt", "--composition", "Cu50Zr50",
                 "--interval", "20", "--output", str(out), "--quiet"]) == 0
    first, last = read(out, ":")
    assert first.get_chemical_formula() == "Cu16Zr16"
    assert last.get_volume() != first.get_volume()


def test_random_model_only_when_asked_and_missing_models_named(tmp_path, capsys):
    assert main(["md", "--model", "random", "--atoms", "16", "--steps", "2", "--output", "", "--quiet"]) == 0
    assert "random weights" in capsys.readouterr().out
    assert main(["md", "--model", str(tmp_path / "none.pth"), "--steps", "2", "--output", ""]) == 2
    err = capsys.readouterr().err
    assert "model file not found" in err and "cuzr" in err  # names what does exist


def test_models_command_lists_the_shipped_models(capsys):
    from equicalc.models import describe

    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[1:] if line and not line.startswith(" ")}
    assert set(rows) == {"cuzr", "cuzr-allegro"}
    for name, row in rows.items():
        d = describe(name)
        assert row[1] == d["architecture"] and float(row[3]) == d["r_max"]
        assert float(row[7]) == round(d["test_errors"]["forces_mae"], 2)


def test_random_alloy_composition():
    atoms = random_alloy(500, "Cu64Zr36", seed=1)
    assert len(atoms) == 500 and (atoms.numbers == 40).sum() == 180
    assert abs(atoms.get_volume() / 500 - 16.3) < 1e-9
    d = atoms.get_all_distances(mic=True)[np.triu_indices(500, 1)]
    assert d.min() > 2.0  # grid sites: no overlapping atoms
    ternary = random_alloy(100, {"Cu": 0.5, "Zr": 0.4, "Al": 0.1}, seed=2)
    assert ternary.get_chemical_formula() == "Al10Cu50Zr40"
    assert random_alloy(50, "Cu64Zr36", seed=3) == random_alloy(50, "Cu64Zr36", seed=3)
    with pytest.raises(ValueError, match="'Qz' is not a chemical symbol"):
        random_alloy(10, "Cu64Qz36")
    with pytest.raises(ValueError, match="not a chemical formula"):
        random_alloy(10, "Cu64(Zr")


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
            "--output-dir", str(out), "--quiet", "--replicas", "1"]
    assert main(args) == 0
    for name in ("quench.csv", "quench.png", "quench.traj", "summary.json"):
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["protocol"]["n_atoms"] == 16
    rows = np.genfromtxt(out / "quench.csv", delimiter=",", names=True, dtype=None, encoding=None)
    hold = rows["stage"] == "hold"
    assert summary["glass_volume_per_atom"] == pytest.approx(rows["volume_per_atom"][hold].mean(), rel=1e-12)
    assert set(summary["rdf_first_peaks_A"]) == {"total", "Cu-Cu", "Cu-Zr", "Zr-Zr"}
    assert set(summary["glass_icosahedral_fraction"]) == {"Cu", "Zr"}
    printed = capsys.readouterr().out
    assert "glass at 400 K" in printed and "Cu-centred full icosahedra" in printed
    assert "--liquid-range 1200 1800 K lies outside 400–1200 K" in printed  # Cu–Zr defaults: not this protocol


@pytest.mark.slow
def test_quench_command_with_a_rate_series(tmp_path, capsys):
    import json

    out = tmp_path / "s"
    args = ["quench", "--model", _small_model_file(tmp_path), "--atoms", "16", "--t-melt", "1200", "--t-final", "400",
            "--rates", "4000", "8000", "--melt-time", "0.04", "--hold-time", "0.04", "--window", "100",
            "--interval", "20", "--output-dir", str(out), "--quiet", "--liquid-range", "800", "1200",
            "--glass-range", "400", "800", "--replicas", "1"]
    assert main(args) == 0
    series = json.loads((out / "series.json").read_text())
    assert series["rates_K_per_ps"] == [8000.0, 4000.0] and (out / "series.png").exists()
    for rate in ("4000", "8000"):
        summary = json.loads((out / f"rate_{rate}" / "summary.json").read_text())
        assert summary["protocol"]["cooling_rate"] == float(rate) and (out / f"rate_{rate}" / "quench.png").exists()
    printed = capsys.readouterr().out
    assert "--- 8000 K/ps" in printed and "Tg against the cooling rate" in printed


def test_rdf_command(tmp_path, capsys):
    frames = [random_alloy(60, "Cu64Zr36", seed=s) for s in range(3)]
    from ase.io import write

    write(tmp_path / "t.extxyz", frames)
    assert main(["rdf", str(tmp_path / "t.extxyz"), "--r-max", "6", "--nbins", "30", "--plot", str(tmp_path / "g.png"),
                 "--csv", str(tmp_path / "g.csv"), "--sq-plot", str(tmp_path / "s.png"), "--quiet"]) == 0
    table = np.loadtxt(tmp_path / "g.csv", delimiter=",", skiprows=1)
    assert table.shape == (30, 5)  # r, total, Cu-Cu, Cu-Zr, Zr-Zr
    from equicalc.analysis import rdf

    direct = rdf(frames, r_max=6, nbins=30)
    np.testing.assert_allclose(table[:, 1], direct.total, rtol=1e-12)
    np.testing.assert_allclose(table[:, 3], direct.g("Cu", "Zr"), rtol=1e-12)
    assert (tmp_path / "g.png").exists() and (tmp_path / "s.png").exists()
    assert "coordination numbers" in capsys.readouterr().out


def test_voronoi_command(tmp_path, capsys):
    from ase.build import bulk
    from ase.io import write

    crystal = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3)
    crystal.symbols[::4] = "Zr"
    write(tmp_path / "t.extxyz", [crystal, random_alloy(60, "Cu64Zr36", seed=1)])
    assert main(["voronoi", str(tmp_path / "t.extxyz"), "--plot", str(tmp_path / "v.png"), "--quiet",
                 "--index", "0"]) == 0
    printed = capsys.readouterr().out
    assert "Cu-centred: <0,12,0,0> 1.000" in printed and "full icosahedra <0,0,12,0>: 0.000" in printed
    assert (tmp_path / "v.png").stat().st_size > 0
    assert main(["voronoi", str(tmp_path / "t.extxyz"), "--radii", "Cu=1.28,Zr"]) == 2
    assert "SYMBOL=RADIUS" in capsys.readouterr().err
    assert main(["voronoi", str(tmp_path / "t.extxyz"), "--radii", "Cu=1.28,Zr=1.6", "--plot", ""]) == 2
    assert "backend='ovito'" in capsys.readouterr().err


def test_phonons_command(tmp_path, capsys):
    out = tmp_path / "ph.png"
    assert main(["phonons", "--model", _small_model_file(tmp_path), "--supercell", "2", "--no-reference",
                 "--output", str(out)]) == 0
    assert out.exists()
    from equicalc import EquiCalc
    from equicalc.systems import relaxed_b2

    a = relaxed_b2(EquiCalc(_small_model_file(tmp_path))).cell[0, 0]
    assert f"model: B2 CuZr a = {a:.4f} Å" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["rdf", str(tmp_path / "missing.traj")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "equicalc rdf: error: trajectory not found" in err


def test_md_replicas_run_in_lockstep_and_each_is_its_solo_run(tmp_path, capsys):
    args = ["md", "--atoms", "24", "--steps", "6", "--interval", "6", "--quiet"]
    assert main(args + ["--replicas", "2", "--seed", "0", "--output", str(tmp_path / "md.traj")]) == 0
    assert "replicas in lockstep" in capsys.readouterr().out
    assert main(args + ["--seed", "1", "--output", str(tmp_path / "solo.traj")]) == 0
    first, second, solo = (read(tmp_path / name, -1) for name in ("md_0.traj", "md_1.traj", "solo.traj"))
    assert np.abs(first.positions - second.positions).max() > 0.1  # own seeds, own starts
    # replica 1 of the ensemble is the run with seed 1 alone, to float32 rounding
    np.testing.assert_allclose(second.positions, solo.positions, atol=1e-4)


@pytest.mark.slow
def test_quench_command_with_replicas(tmp_path, capsys):
    import json

    from equicalc.analysis import EnsembleQuenchResult

    out = tmp_path / "q"
    args = ["quench", "--model", _small_model_file(tmp_path), "--atoms", "16", "--t-melt", "1200", "--t-final", "400",
            "--rate", "4000", "--melt-time", "0.04", "--hold-time", "0.04", "--window", "100", "--interval", "20",
            "--output-dir", str(out), "--quiet", "--replicas", "2", "--liquid-range", "800", "1200",
            "--glass-range", "400", "800"]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["replicas"] == 2 and (out / "replica_1" / "quench.csv").exists()
    # each fit gives the mean over the replicas that have a Tg, or says why there is none (a random model's
    # 16-atom curves often have no kink)
    for key in ("tg_volume", "tg_enthalpy", "tg_volume_hyperbola", "tg_enthalpy_hyperbola"):
        fit = summary[key]
        if "tg_K" in fit:
            assert len(fit["per_replica_K"]) == 2 and fit["tg_K"] == pytest.approx(np.mean(fit["per_replica_K"]))
        else:
            assert "of 2 replicas gave a Tg" in fit["error"], fit
    ensemble = EnsembleQuenchResult.load(out)
    for quantity in ("volume", "enthalpy"):  # and the replicas' mean curve, fitted once
        fit = summary[f"tg_{quantity}_pooled"]
        try:
            tg = ensemble.glass_transition(quantity, "windows", (800.0, 1200.0), (400.0, 800.0), pooled=True)
        except ValueError as exc:
            assert fit == {"error": str(exc)}
        else:
            assert fit["tg_K"] == pytest.approx(tg.tg) and fit["error_K"] == pytest.approx(tg.error)
    assert set(summary["glass_icosahedral_fraction_error"]) == {"Cu", "Zr"}
    hold = [np.genfromtxt(out / f"replica_{k}" / "quench.csv", delimiter=",", names=True, dtype=None,
                          encoding=None) for k in range(2)]
    volumes = [h["volume_per_atom"][h["stage"] == "hold"].mean() for h in hold]
    assert summary["glass_volume_per_atom"] == pytest.approx(np.mean(volumes), rel=1e-12)
    assert "over 2 replicas" in capsys.readouterr().out
    # one more replica, later: replica 2, and the results over all three
    later = list(args)
    later[later.index("--replicas") + 1] = "1"
    assert main(later + ["--first-replica", "2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["replicas"] == 3
    assert json.loads((out / "replica_2" / "log.txt").read_text().splitlines()[0].split(": ", 1)[1])["seed"] == 2
    assert "over 3 replicas" in capsys.readouterr().out
    assert main(args + ["--first-replica", "2", "--rates", "4000", "8000"]) == 2


def test_deploy_lammps_passes_its_options_to_export_lammps(tmp_path, capsys, monkeypatch):
    """The command line's options reach export_lammps (whose compilation the slow tier tests)."""
    import equicalc.lammps

    calls = []

    def export(model, directory, dtype, overwrite, cache):
        calls.append((model, directory, dtype, overwrite, cache))
        return tmp_path / "model.pt2"

    monkeypatch.setattr(equicalc.lammps, "export_lammps", export)
    assert main(["deploy", "cuzr-allegro", "--lammps", str(tmp_path), "--dtype", "float32", "--no-cache"]) == 0
    assert main(["deploy", "cuzr", "--lammps", str(tmp_path), "--overwrite"]) == 0
    assert calls == [("cuzr-allegro", str(tmp_path), "float32", False, False),
                     ("cuzr", str(tmp_path), "float64", True, True)]
    assert "pair_coeff * * " + str(tmp_path / "model.pt2") in capsys.readouterr().out
    assert main(["deploy", "cuzr", "out.pth", "--lammps", str(tmp_path)]) == 2  # one or the other
