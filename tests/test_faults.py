"""Nothing lost, nothing silent: bad files, bad input and kills at any instant."""
import csv
import os
import resource
import time

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.emt import EMT

from conftest import SHORT_QUENCH, cu_au_alloy, random_cuzr, small_model, training_config, write_emt_data
from equicalc import EquiCalc, build_model, load_model, save_model
from equicalc.cli import main
from equicalc.model_io import FORMAT_VERSION
from equicalc.train import config_from_dict, load_checkpoint, train


def _saved(tmp_path, **changes):
    """A small model file with its payload's entries changed (``config``: merged into the stored spec)."""
    path = tmp_path / "m.pth"
    save_model(small_model(dtype="float32"), path)
    payload = torch.load(path, weights_only=True)
    config = changes.pop("config", None)
    if config:
        payload["config"].update(config)
    payload.update(changes)
    torch.save(payload, path)
    return path


# -- model files ------------------------------------------------------------------------------------------------

def test_a_config_far_larger_than_its_weights_allocates_nothing(tmp_path):
    path = _saved(tmp_path, config={"num_features": 1024, "num_layers": 16})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="weights do not match the configuration: 'embedding.weight' has shape"):
        load_model(path)
    assert time.perf_counter() - t0 < 5.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 100_000  # kB: nothing the size of such a model
    with pytest.raises(ValueError, match="'num_features' must be <= 1024"):
        load_model(_saved(tmp_path, config={"num_features": 4096}))


def test_non_finite_weights_and_bad_versions_are_refused(tmp_path):
    path = _saved(tmp_path)
    payload = torch.load(path, weights_only=True)
    key = next(k for k, v in payload["state_dict"].items() if v.is_floating_point() and v.numel())
    payload["state_dict"][key] = payload["state_dict"][key].clone().fill_(float("nan"))
    torch.save(payload, tmp_path / "nan.pth")
    with pytest.raises(ValueError, match=f"weight '{key}' holds NaN or infinite values"):
        load_model(tmp_path / "nan.pth")
    payload = torch.load(path, weights_only=True)
    for version in (True, -5, 0, "2", 1.0):
        torch.save(dict(payload, format_version=version), tmp_path / "version.pth")
        with pytest.raises(ValueError, match="no valid format version"):
            load_model(tmp_path / "version.pth")
    torch.save(dict(payload, format_version=FORMAT_VERSION + 1), tmp_path / "version.pth")
    with pytest.raises(ValueError, match="newer than this equicalc supports"):
        load_model(tmp_path / "version.pth")
    payload = torch.load(path, weights_only=True)
    del payload["config"]["species"]
    torch.save(payload, tmp_path / "nospecies.pth")
    with pytest.raises(ValueError, match="'species' is required"):
        load_model(tmp_path / "nospecies.pth")


def test_saving_follows_links_and_refuses_devices(tmp_path):
    model = small_model()
    target = tmp_path / "real.pth"
    link = tmp_path / "link.pth"
    save_model(model, target)
    link.symlink_to(target)
    save_model(model, link, metadata={"note": "through the link"})
    assert link.is_symlink() and load_model(target).metadata["note"] == "through the link"
    with pytest.raises(ValueError, match="not a regular file"):
        save_model(model, "/dev/null")
    with pytest.raises(ValueError, match="not a regular file"):
        save_model(model, tmp_path)
    assert not list(tmp_path.glob("*.tmp"))


# -- the calculator ---------------------------------------------------------------------------------------------

def test_coincident_atoms_are_named():
    atoms = random_cuzr(seed=3)
    atoms.positions[7] = atoms.positions[2] + [0.02, 0.0, 0.0]
    calc = EquiCalc(small_model())
    atoms.calc = calc
    with pytest.raises(ValueError, match="atoms 2 and 7 are 0.02 Å apart"):
        atoms.get_potential_energy()
    with pytest.raises(ValueError, match="structure 1: atoms 2 and 7"):
        calc.calculate_batch([random_cuzr(seed=4), atoms])


@pytest.mark.parametrize("kwargs, message", [
    ({"max_edges_per_batch": 0}, "max_edges_per_batch must be a positive integer"),
    ({"max_edges_per_batch": -5}, "max_edges_per_batch must be a positive integer"),
    ({"skin": float("nan")}, "skin must be a finite distance"),
    ({"skin": -0.1}, "skin must be a finite distance"),
])
def test_calculator_arguments_have_ranges(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EquiCalc(small_model(), **kwargs)


# -- the ZBL wall -------------------------------------------------------------------------------------------------

def _zbl_reference(r, zi, zj):
    """ZBL pair energy (eV) written out from its definition, independently of equicalc.nn.zbl."""
    a = 0.46850 / (zi ** 0.23 + zj ** 0.23)
    x = r / a
    phi = (0.18175 * np.exp(-3.19980 * x) + 0.50986 * np.exp(-0.94229 * x) + 0.28022 * np.exp(-0.40290 * x)
           + 0.02817 * np.exp(-0.20162 * x))
    return 14.399645 * zi * zj / r * phi


@pytest.mark.parametrize("pair", [("Cu", "Cu"), ("Cu", "Zr"), ("Zr", "Zr")])
def test_zbl_wall_is_the_screened_coulomb_repulsion_below_the_switch(pair):
    from ase.data import atomic_numbers, covalent_radii

    with_wall = EquiCalc(small_model(zbl=True))
    without = EquiCalc(small_model(zbl=False))
    zi, zj = (atomic_numbers[s] for s in pair)
    r_in = 0.35 * (covalent_radii[zi] + covalent_radii[zj])
    energies = []
    for r in np.linspace(0.3, r_in, 8):
        dimer = Atoms(pair, positions=[[0, 0, 0], [r, 0, 0]])
        e_wall, e_net = (c.calculate_batch([dimer])[0]["energy"] for c in (with_wall, without))
        assert e_wall - e_net == pytest.approx(_zbl_reference(r, zi, zj), rel=1e-10)
        energies.append(e_wall)
    assert np.all(np.diff(energies) < 0)  # the energy falls as the pair separates: a wall
    assert energies[0] > 1000.0  # eV at 0.3 Å


def test_zbl_is_smooth_through_its_switch_and_forces_are_its_gradient():
    from equicalc.nn.zbl import switch

    r_in, r_out = torch.tensor(1.0, dtype=torch.float64), torch.tensor(1.6, dtype=torch.float64)
    for edge, value in ((r_in, 1.0), (r_out, 0.0)):
        r = (edge + torch.tensor([-1e-6, 0.0, 1e-6], dtype=torch.float64)).requires_grad_()
        s = switch(r, r_in, r_out)
        (d1,) = torch.autograd.grad(s.sum(), r, create_graph=True)
        (d2,) = torch.autograd.grad(d1.sum(), r)
        assert torch.allclose(s, torch.full((3,), value, dtype=torch.float64), atol=1e-12)
        assert torch.allclose(d1, torch.zeros(3, dtype=torch.float64), atol=1e-9)  # ~ (h/width)^2
        assert torch.allclose(d2, torch.zeros(3, dtype=torch.float64), atol=1e-3)  # ~ h/width^3
    # forces on a squeezed cluster, where the wall acts, against central differences of the energy
    calc = EquiCalc(small_model(zbl=True))
    atoms = Atoms("CuZrCu", positions=[[0, 0, 0], [1.5, 0.2, 0], [0.3, 1.2, 0.4]])
    atoms.calc = calc
    forces = atoms.get_forces()
    assert np.abs(forces).max() > 10.0  # the wall pushes hard here
    h = 1e-5
    for i in range(3):
        for k in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[i, k] += h
            minus.positions[i, k] -= h
            e = [calc.calculate_batch([x])[0]["energy"] for x in (plus, minus)]
            assert forces[i, k] == pytest.approx(-(e[0] - e[1]) / (2 * h), rel=1e-6, abs=1e-6)


def test_models_saved_before_the_wall_existed_have_none(tmp_path):
    path = _saved(tmp_path, format_version=1, config={"zbl": True})
    payload = torch.load(path, weights_only=True)
    for key in ("zbl", "zbl_inner", "zbl_outer"):
        payload["config"].pop(key)
    torch.save(payload, path)
    assert load_model(path).spec.zbl is False
    assert build_model(species=["Cu"], num_features=4).spec.zbl is True  # new models have it


# -- training -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def emt_data(tmp_path_factory):
    return write_emt_data(tmp_path_factory.mktemp("emt"), 16, 4)


def _config(data, run_dir, **training):
    return training_config(data, run_dir, {"num_layers": 1, "num_features": 4, "num_basis": 4, "radial_hidden": 8},
                           **training)


@pytest.mark.parametrize("section, key, value, message", [
    ("training", "ema_decay", 1.5, "'training.ema_decay' must be < 1"),
    ("training", "plateau_factor", 2.0, "'training.plateau_factor' must be < 1"),
    ("training", "lr", float("inf"), "'training.lr' must be a finite number"),
    ("loss", "energy_weight", float("nan"), "'loss.energy_weight' must be a finite number"),
    ("data", "species", ["Cu", "Zz"], "'data.species': species: 'Zz' is not a chemical symbol"),
])
def test_config_values_out_of_range_are_refused(section, key, value, message):
    raw = {"data": {"train": "x.extxyz"}}
    raw.setdefault(section, {})[key] = value
    with pytest.raises(ValueError, match=message):
        config_from_dict(raw)


def test_validation_frames_with_unknown_species_are_named(emt_data, tmp_path):
    from ase.io import read, write

    val = read(emt_data / "val.extxyz", ":")
    val[2].numbers[0] = 47  # silver, which the training data do not have
    write(tmp_path / "val.extxyz", val)
    (tmp_path / "train.extxyz").symlink_to(emt_data / "train.extxyz")
    with pytest.raises(ValueError, match=r"the val data: .*val.extxyz.*2.* holds Ag, which the model does not know"):
        train(_config(tmp_path, tmp_path / "run"), show_progress=False, echo=False)


def test_a_non_finite_loss_stops_with_the_last_good_checkpoint(emt_data, tmp_path, monkeypatch, capsys):
    import equicalc.train.loop as loop

    calls = {"n": 0}
    original = loop.loss_terms

    def poisoned(*args, **kwargs):
        parts = original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] > 5:  # epoch 1 has 4 steps: the second epoch goes wrong
            parts["total"] = parts["total"] * float("nan")
        return parts

    monkeypatch.setattr(loop, "loss_terms", poisoned)
    with pytest.raises(RuntimeError, match="the loss became nan at step 6 of epoch 2.*epoch 1"):
        train(_config(emt_data, tmp_path / "run"), show_progress=False, echo=False)
    assert load_checkpoint(tmp_path / "run" / "checkpoint_last.pt")["state"]["epoch"] == 1
    with open(tmp_path / "run" / "metrics.csv") as fh:
        assert [r["epoch"] for r in csv.DictReader(fh)] == ["1"]
    calls["n"] = 0
    cfg_path = tmp_path / "config.yaml"
    import yaml

    cfg_path.write_text(yaml.safe_dump({**_config(emt_data, tmp_path / "cli").to_dict(),
                                        "data": {"train": str(emt_data / "train.extxyz"),
                                                 "val": str(emt_data / "val.extxyz")}}))
    assert main(["train", str(cfg_path), "--quiet"]) == 1
    assert "training stopped: the loss became nan" in capsys.readouterr().err


def test_a_run_resumes_only_with_what_started_it(emt_data, tmp_path, capsys):
    run = tmp_path / "run"
    train(_config(emt_data, run, max_epochs=1), show_progress=False, echo=False)
    with pytest.raises(ValueError, match=r"config differs from the run's \(training.lr: 0.01 -> 0.02\)"):
        train(_config(emt_data, run, max_epochs=2, lr=0.02), restart=True, show_progress=False, echo=False)
    with pytest.raises(FileExistsError, match="--restart.*--overwrite"):
        train(_config(emt_data, run, max_epochs=2), show_progress=False, echo=False)
    (run / "checkpoint_last.pt.abc123.tmp").write_bytes(b"left by a kill")
    # more epochs and a more patient schedule: fine
    train(_config(emt_data, run, max_epochs=2, plateau_patience=20), restart=True, show_progress=False, echo=False)
    assert not list(run.glob("*.tmp"))
    train(_config(emt_data, run, max_epochs=1), overwrite=True, show_progress=False, echo=False)
    printed = capsys.readouterr().out
    assert "overwrite: deleted" in printed and "checkpoint_last.pt" in printed and "metrics.csv" in printed
    assert load_checkpoint(run / "checkpoint_last.pt")["state"]["epoch"] == 1
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train.extxyz", "val.extxyz"):
        (data / name).write_bytes((emt_data / name).read_bytes())
    train(_config(data, tmp_path / "run2", max_epochs=1), show_progress=False, echo=False)
    with open(data / "val.extxyz", "a") as fh:
        fh.write((emt_data / "val.extxyz").read_text().split("\n", 1)[0] + "\n")  # the file changes
    with pytest.raises(ValueError, match="the val data file"):
        train(_config(data, tmp_path / "run2", max_epochs=2), restart=True, show_progress=False, echo=False)


def test_threads_may_change_on_restart_from_the_command_line(emt_data, tmp_path):
    import yaml

    import torch

    def config_file(max_epochs):
        path = tmp_path / f"config{max_epochs}.yaml"
        path.write_text(yaml.safe_dump({**_config(emt_data, tmp_path / "run", max_epochs=max_epochs).to_dict(),
                                        "data": {"train": str(emt_data / "train.extxyz"),
                                                 "val": str(emt_data / "val.extxyz")}}))
        return str(path)

    before = torch.get_num_threads()
    try:
        assert main(["train", config_file(1), "--quiet", "--threads", "2"]) == 0
        assert torch.get_num_threads() == 2
        assert main(["train", config_file(2), "--quiet", "--restart", "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert load_checkpoint(tmp_path / "run" / "checkpoint_last.pt")["state"]["epoch"] == 2
    assert main(["train", config_file(3), "--threads", "0"]) == 2  # a usage error


class _Kill(BaseException):
    pass


def _kill_after(m, targets, k):
    """Patch ``(owner, name)`` callables so that the k-th call among them (1-based) raises ``_Kill`` after doing
    its work: a process killed right after a write or a rename."""
    count = {"n": 0}
    for owner, name in targets:
        original = getattr(owner, name)

        def wrapped(*args, _original=original, **kwargs):
            out = _original(*args, **kwargs)
            count["n"] += 1
            if count["n"] == k:
                raise _Kill
            return out

        m.setattr(owner, name, wrapped)


def _metrics_rows(path):
    with open(path) as fh:
        return [{k: v for k, v in r.items() if k not in ("time_s", "structures_per_s")} for r in csv.DictReader(fh)]


@pytest.mark.slow
def test_training_killed_after_any_write_resumes_to_the_same_end(emt_data, tmp_path, monkeypatch):
    """After epoch 1, a resumed run writes: the metrics file (truncated on resume), then per epoch the
    metrics row, checkpoint_last and checkpoint_best (each a torch.save into a temporary file and a rename).
    Killed after each of the first ten of those writes and renames, then resumed, the run ends where an
    uninterrupted run ends: same weights, same best checkpoint, same metrics, no temporary files."""
    import equicalc.train.loop as loop

    reference = tmp_path / "reference"
    train(_config(emt_data, reference), show_progress=False, echo=False)
    writes = [(loop, "_append_csv"), (torch, "save"), (os, "replace")]
    for k in range(1, 11):
        run = tmp_path / f"killed{k}"
        train(_config(emt_data, run), stop_after_epochs=1, show_progress=False, echo=False)
        with monkeypatch.context() as m:
            _kill_after(m, writes, k)
            with pytest.raises(_Kill):
                train(_config(emt_data, run), restart=True, show_progress=False, echo=False)
        train(_config(emt_data, run), restart=True, show_progress=False, echo=False)
        for name in ("checkpoint_last.pt", "checkpoint_best.pt"):
            a, b = load_checkpoint(reference / name), load_checkpoint(run / name)
            assert a["state"]["epoch"] == b["state"]["epoch"], (k, name)
            for key, t in a["model"]["state_dict"].items():
                assert torch.equal(t, b["model"]["state_dict"][key]), (k, name, key)
        assert _metrics_rows(reference / "metrics.csv") == _metrics_rows(run / "metrics.csv"), k
        assert not list(run.glob("*.tmp")), k


# -- quench ---------------------------------------------------------------------------------------------------

QUENCH = SHORT_QUENCH


def test_quench_resumes_only_with_its_calculator(tmp_path, capsys):
    from equicalc.analysis import quench

    model = small_model(species=["Cu", "Au"], shifts={"Cu": -3.5, "Au": -3.8})
    short = dict(QUENCH, hold_time=0.0, cooling_rate=30000.0)
    quench(cu_au_alloy(), EquiCalc(model), directory=tmp_path, **short)
    with pytest.raises(ValueError, match="another calculator .*dtype"):
        quench(cu_au_alloy(), EquiCalc(model, dtype="float32"), directory=tmp_path, **short)
    with pytest.raises(ValueError, match="another calculator .*weights_sha256"):
        other = small_model(species=["Cu", "Au"], shifts={"Cu": -3.5, "Au": -3.8}, seed=9)
        quench(cu_au_alloy(), EquiCalc(other), directory=tmp_path, **short)
    with pytest.raises(ValueError, match="another protocol .*cooling_rate"):
        quench(cu_au_alloy(), EquiCalc(model), directory=tmp_path, **QUENCH)
    quench(cu_au_alloy(), EMT(), directory=tmp_path, overwrite=True, **QUENCH)
    assert "overwrite deleted" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.txt", "quench.csv", "quench.traj", "state.json",
                                                          "state_prev.json"]


def test_a_quench_without_its_saved_state_keeps_finished_records(tmp_path, capsys):
    """State files are not kept with a finished run's records (they are the whole MD state): calling quench
    again must not rerun it silently; a run that lost its state before the end starts afresh."""
    from equicalc.analysis import QuenchResult, quench

    first = quench(cu_au_alloy(), EMT(), directory=tmp_path, **QUENCH)
    for name in ("state.json", "state_prev.json"):
        (tmp_path / name).unlink()
    with pytest.raises(ValueError, match="finished run without its saved state.*overwrite"):
        quench(cu_au_alloy(), EMT(), directory=tmp_path, **QUENCH)
    assert np.array_equal(QuenchResult.load(tmp_path).data["volume_per_atom"], first.data["volume_per_atom"])
    with open(tmp_path / "log.txt", "a") as log:  # as if killed before the end, its state lost with it
        log.write("2026-01-01 00:00:00 stopped at step 20\n")
    again = quench(cu_au_alloy(), EMT(), directory=tmp_path, **QUENCH)
    assert "no saved state to resume from: deleted" in capsys.readouterr().out
    assert again.finished and np.allclose(again.data["volume_per_atom"], first.data["volume_per_atom"])


@pytest.mark.slow
def test_quench_killed_after_any_write_resumes_to_the_same_end(tmp_path, monkeypatch):
    """Every 20 steps a quench writes a trajectory frame, then its state (a temporary file, renamed). Killed
    after each of those writes in the second segment, or between two force calls, the resumed run ends
    exactly as the uninterrupted one: same rows, same frames, no temporary files."""
    import importlib
    import pathlib

    from ase.io import read

    qmod = importlib.import_module("equicalc.analysis.quench")  # the module (the package exports the function)

    calc = EquiCalc(small_model(species=["Cu", "Au"], shifts={"Cu": -3.5, "Au": -3.8}), skin=0.0)  # deterministic: the same input, the same bits
    reference = qmod.quench(cu_au_alloy(), calc, directory=tmp_path / "reference", **QUENCH)
    n_steps = reference.protocol["n_steps"]
    kills = [[(qmod._Records, "frame"), (pathlib.Path, "write_text"), (os, "replace")]] * 3 + [[(EquiCalc, "calculate")]]
    for k, targets in enumerate(kills):
        run = tmp_path / f"killed{k}"
        with monkeypatch.context() as m:
            _kill_after(m, targets, 4 + k if k < 3 else 31)  # writes 1-3: the first segment's
            with pytest.raises(_Kill):
                qmod.quench(cu_au_alloy(), calc, directory=run, **QUENCH)
        done = qmod.quench(cu_au_alloy(), calc, directory=run, **QUENCH)
        assert done.data["step"][-1] == n_steps, k
        for column in ("temperature_K", "volume_per_atom", "epot_per_atom", "pressure_GPa"):
            np.testing.assert_array_equal(done.data[column], reference.data[column], err_msg=f"{k} {column}")
        assert [a.info["step"] for a in read(run / "quench.traj", ":")] == list(range(20, n_steps + 1, 20)), k
        assert not list(run.glob("*.tmp")), k


def test_a_kill_while_records_are_truncated_leaves_them_whole(tmp_path, monkeypatch):
    """On resume the rows and frames after the saved state are dropped by rewriting the files; a kill in the
    middle of that rewrite leaves the old files, readable and complete."""
    import importlib

    from ase.io import read
    from ase.io.trajectory import TrajectoryWriter

    qmod = importlib.import_module("equicalc.analysis.quench")
    qmod.quench(cu_au_alloy(), EMT(), directory=tmp_path, **QUENCH)
    traj, rows = tmp_path / "quench.traj", (tmp_path / "quench.csv").read_text()
    n_frames = len(read(traj, ":"))
    with monkeypatch.context() as m:
        _kill_after(m, [(TrajectoryWriter, "write")], 1)
        with pytest.raises(_Kill):
            qmod._truncate_records(tmp_path / "quench.csv", traj, 20)
    assert len(read(traj, ":")) == n_frames and not list(tmp_path.glob("*.tmp"))
    qmod._truncate_records(tmp_path / "quench.csv", traj, 20)
    assert [a.info["step"] for a in read(traj, ":")] == [20]
    assert (tmp_path / "quench.csv").read_text() != rows


# -- the command line -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["md", "--interval", "0"], "--interval: must be a positive integer"),
    (["md", "--atoms", "0"], "--atoms: must be a positive integer"),
    (["md", "--temperature", "-5"], "--temperature: must be a positive number"),
    (["md", "--timestep", "0"], "--timestep: must be a positive number"),
    (["md", "--composition", "Cu64Zr-36"], "--composition"),
    (["quench", "--rate", "nan"], "--rate: must be a positive number"),
    (["rdf", "x.traj", "--nbins", "0"], "--nbins: must be a positive integer"),
])
def test_usage_errors_exit_2_and_name_the_argument(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_md_needs_two_atoms(capsys):
    assert main(["md", "--atoms", "1", "--steps", "2", "--output", "", "--quiet"]) == 2
    assert "needs at least 2 atoms" in capsys.readouterr().err


@pytest.mark.parametrize("command", [
    ["rdf", "{frames}", "--plot", "{bad}"],
    ["rdf", "{frames}", "--csv", "{bad}"],
    ["phonons", "--model", "random", "--output", "{bad}", "--no-reference"],
    ["eval", "cuzr", "{frames}", "--plot", "{bad}"],
    ["md", "--steps", "2", "--output", "{bad}"],
])
def test_unwritable_outputs_fail_before_the_work(command, tmp_path, capsys):
    from ase.io import write

    write(tmp_path / "frames.extxyz", [random_cuzr(seed=1)])
    bad = tmp_path / "no" / "such" / "folder" / "out.png"
    args = [a.format(frames=tmp_path / "frames.extxyz", bad=bad) for a in command]
    t0 = time.perf_counter()
    assert main(args) == 2
    assert time.perf_counter() - t0 < 3.0
    assert "does not exist" in capsys.readouterr().err


def test_md_output_is_not_overwritten_silently(tmp_path, capsys):
    out = tmp_path / "md.traj"
    args = ["md", "--model", "random", "--atoms", "8", "--steps", "2", "--output", str(out), "--quiet"]
    assert main(args) == 0
    record = (tmp_path / "md.traj.json").read_text()
    assert '"weights_sha256"' in record and '"steps": 2' in record
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0


def test_init_from_a_malicious_file_is_a_clear_error(emt_data, tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo ran",))

    with open(tmp_path / "evil.pth", "wb") as fh:
        pickle.dump({"format": "equicalc-model", "x": Evil()}, fh)
    cfg = _config(emt_data, tmp_path / "run")
    cfg.model.init_from = str(tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="not a readable equicalc model file"):
        train(cfg, show_progress=False, echo=False)
