"""Training: data reading, statistics, config checks, learning, restart, eval and deploy."""
import csv

import numpy as np
import pytest
import torch
from ase.io import write

from equicalc import load_model
from equicalc.cli import main
from equicalc.data import GraphDataset, dataset_statistics, read_frames, split_indices
from equicalc.train import config_from_dict, config_reference, load_config, train
from equicalc.train.checkpoint import load_checkpoint
from conftest import assert_same_weights, emt_frames, training_config, write_emt_data


@pytest.fixture(scope="module")
def emt_files(tmp_path_factory):
    return write_emt_data(tmp_path_factory.mktemp("emt"), 40, 10)


def tiny_config(emt_files, run_dir, **training):
    return training_config(emt_files, run_dir, **training)


def test_read_frames_and_errors(tmp_path):
    frames = emt_frames(3)
    write(tmp_path / "ok.extxyz", frames)
    got = read_frames(tmp_path / "ok.extxyz")
    assert len(got) == 3
    np.testing.assert_allclose(got[1].forces, frames[1].get_forces(), atol=1e-8)
    np.testing.assert_allclose(got[2].energy, frames[2].get_potential_energy())
    assert got[0].stress.shape == (3, 3)
    # a frame without forces is named with its file and index
    bad = [a.copy() for a in frames]
    for a, f in zip(bad, frames):
        a.info["energy"] = f.get_potential_energy()
    bad[0].arrays["forces"] = frames[0].get_forces()
    bad[2].arrays["forces"] = frames[2].get_forces()
    write(tmp_path / "bad.extxyz", bad)
    with pytest.raises(ValueError, match=r"bad.extxyz, frame 1: no forces"):
        read_frames(tmp_path / "bad.extxyz")
    # NaN in forces
    nan = frames[0].copy()
    f = frames[0].get_forces().copy()
    f[3, 1] = np.nan
    from ase.calculators.singlepoint import SinglePointCalculator

    nan.calc = SinglePointCalculator(nan, energy=1.0, forces=f)
    write(tmp_path / "nan.extxyz", [frames[1], nan])
    with pytest.raises(ValueError, match=r"frame 1: forces contain NaN"):
        read_frames(tmp_path / "nan.extxyz")
    with pytest.raises(FileNotFoundError):
        read_frames(tmp_path / "missing.extxyz")


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz"])
def test_compressed_files_read_as_the_plain_one(tmp_path, suffix):
    """A compressed extxyz file gives the frames of the plain file, each index form, errors with its name."""
    frames = emt_frames(4)
    write(tmp_path / "ok.extxyz", frames)
    write(tmp_path / f"ok.extxyz{suffix}", frames)
    for index in (":", "1:3", "-1"):
        plain, packed = read_frames(tmp_path / "ok.extxyz", index), read_frames(tmp_path / f"ok.extxyz{suffix}", index)
        assert len(plain) == len(packed) >= 1
        for a, b in zip(plain, packed):
            assert np.array_equal(a.atoms.positions, b.atoms.positions) and np.array_equal(a.forces, b.forces)
            assert a.energy == b.energy and np.array_equal(a.stress, b.stress)
    bad = [a.copy() for a in frames]
    bad[0].info["energy"] = 1.0
    write(tmp_path / f"bad.extxyz{suffix}", bad[:1])
    with pytest.raises(ValueError, match=rf"bad.extxyz{suffix}, frame 0: no forces"):
        read_frames(tmp_path / f"bad.extxyz{suffix}")


def test_custom_keys_and_voigt_or_3x3_stress(tmp_path):
    frames = emt_frames(2)
    out = []
    for k, a in enumerate(frames):
        b = a.copy()
        b.info["REF_energy"] = a.get_potential_energy()
        b.arrays["REF_forces"] = a.get_forces()
        s = a.get_stress(voigt=False)
        b.info["REF_stress"] = s.ravel() if k == 0 else a.get_stress()
        out.append(b)
    write(tmp_path / "ref.extxyz", out)
    got = read_frames(tmp_path / "ref.extxyz", energy_key="REF_energy", forces_key="REF_forces",
                      stress_key="REF_stress")
    for g, a in zip(got, frames):
        np.testing.assert_allclose(g.stress, a.get_stress(voigt=False), atol=1e-12)
        np.testing.assert_allclose(g.forces, a.get_forces(), atol=1e-8)


def test_split_indices():
    parts = split_indices(100, [0, 0.1, 5], seed=3)
    assert [len(p) for p in parts] == [85, 10, 5]
    assert sorted(np.concatenate(parts).tolist()) == list(range(100))
    again = split_indices(100, [0, 0.1, 5], seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    with pytest.raises(ValueError):
        split_indices(10, [0, 6, 5])


def test_statistics_recover_per_species_energies():
    from ase import Atoms

    from equicalc.data import Frame

    rng = np.random.default_rng(0)
    frames = []
    for _ in range(20):
        n_cu, n_au = rng.integers(1, 10, 2)
        atoms = Atoms(["Cu"] * n_cu + ["Au"] * n_au, positions=rng.uniform(0, 20, (n_cu + n_au, 3)))
        e = -3.5 * n_cu - 2.0 * n_au
        frames.append(Frame(atoms, e, rng.normal(size=(len(atoms), 3)), None))
    stats = dataset_statistics(frames, r_max=3.0)
    assert stats["species"] == ["Cu", "Au"]
    assert stats["energy_shifts"]["Cu"] == pytest.approx(-3.5)
    assert stats["energy_shifts"]["Au"] == pytest.approx(-2.0)
    forces = np.concatenate([f.forces.ravel() for f in frames])
    assert stats["force_rms"] == pytest.approx(np.sqrt(np.mean(forces ** 2)))


def test_config_errors(tmp_path):
    base = {"data": {"train": "x.extxyz"}}
    cases = [
        ({"data": {"train": "x", "energy_kye": "e"}}, "unknown key 'data.energy_kye'; did you mean 'energy_key'"),
        ({**base, "training": {"lr": "fast"}}, "'training.lr' must be a number"),
        ({**base, "training": {"lr": -1}}, "'training.lr' must be > 0"),
        ({**base, "training": {"batch_size": 2.5}}, "'training.batch_size' must be an integer"),
        ({**base, "training": {"scheduler": "step"}}, "'training.scheduler' must be one of plateau, cosine, constant"),
        ({**base, "loss": {"kind": "l1"}}, "'loss.kind' must be one of mse, huber"),
        ({**base, "model": {"num_layrs": 2}}, "did you mean 'num_layers'"),
        ({**base, "model": {"l_max": 1.5}}, "'model.l_max' must be an integer"),
        ({**base, "model": {"architecture": "schnet"}}, "'model.architecture' must be one of"),
        ({**base, "optimiser": {}}, "unknown key 'optimiser'"),
        ({"model": {}}, "section 'data' is required"),
        ({"data": {"val": "v"}}, "'data.train' is required"),
        ({**base, "loss": {"energy_weight": 0, "forces_weight": 0, "stress_weight": 0}}, "at least one of"),
    ]
    for raw, message in cases:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            config_from_dict(raw)
    (tmp_path / "c.yaml").write_text("data: [1, 2\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "c.yaml").write_text("data: {train: t.xyz}\ntraining: {max_epochs: 7}\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.training.max_epochs == 7 and cfg.data.train == str(tmp_path / "t.xyz")
    assert cfg.to_dict()["data"]["train"] == "t.xyz"  # stored as written, not as this machine's path


def test_config_reference_documents_every_key():
    table = config_reference()
    for key in ("data.train", "data.stress_key", "model.dtype", "loss.kind", "training.ema_decay",
                "training.max_minutes", "training.scheduler"):
        assert f"`{key}`" in table


@pytest.mark.slow
def test_training_halves_the_validation_force_error(emt_files, tmp_path):
    cfg = tiny_config(emt_files, tmp_path / "run", max_epochs=12, lr=0.01, ema_decay=0.9)
    summary = train(cfg, show_progress=False, echo=False)
    with open(tmp_path / "run" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12
    first, best = float(rows[0]["val_forces_mae"]), min(float(r["val_forces_mae"]) for r in rows)
    assert best < 0.5 * first, (first, best)
    model = load_model(summary["model_path"])
    assert model.metadata["training"]["val_metrics"]["forces_mae"] < 0.5 * first
    assert (tmp_path / "run" / "parity.png").stat().st_size > 1000


@pytest.mark.slow
def test_restart_gives_the_same_weights(emt_files, tmp_path):
    ref = train(tiny_config(emt_files, tmp_path / "a", max_epochs=3, scheduler="cosine", warmup_epochs=1),
                show_progress=False, echo=False)
    cfg = tiny_config(emt_files, tmp_path / "b", max_epochs=3, scheduler="cosine", warmup_epochs=1)
    part = train(cfg, show_progress=False, echo=False, stop_after_epochs=1)
    assert part["stop_reason"] == "stopped" and part["epoch"] == 1
    with pytest.raises(FileExistsError, match="--restart"):
        train(cfg, show_progress=False, echo=False)
    train(cfg, restart=True, show_progress=False, echo=False)
    a = load_checkpoint(tmp_path / "a" / "checkpoint_last.pt")
    b = load_checkpoint(tmp_path / "b" / "checkpoint_last.pt")
    assert a["state"]["epoch"] == b["state"]["epoch"] == 3
    for key in ("model",):
        for name, t in a[key]["state_dict"].items():
            assert torch.equal(t, b[key]["state_dict"][name]), name
    for name, t in a["ema_state_dict"].items():
        assert torch.equal(t, b["ema_state_dict"][name]), name
    with open(tmp_path / "b" / "metrics.csv") as fh:
        assert [r["epoch"] for r in csv.DictReader(fh)] == ["1", "2", "3"]
    exported = load_model(ref["model_path"])  # the best epoch's EMA weights, as the checkpoint holds them
    assert_same_weights(exported, load_model(tmp_path / "a" / "checkpoint_best.pt"))


@pytest.mark.slow
def test_eval_and_deploy_cli(emt_files, tmp_path, capsys):
    cfg = tiny_config(emt_files, tmp_path / "run", max_epochs=1)
    summary = train(cfg, show_progress=False, echo=False)
    model_path = summary["model_path"]
    data = emt_files / "val.extxyz"
    assert main(["eval", model_path, str(data), "--output", str(tmp_path / "pred.extxyz"),
                 "--plot", str(tmp_path / "parity.png"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    # metrics against a direct numpy computation with the ASE calculator
    from ase.io import read

    from equicalc import EquiCalc

    calc = EquiCalc(model_path)
    e_err, f_err, s_err = [], [], []
    for atoms in read(data, ":"):
        ref_e, ref_f, ref_s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress(voigt=False)
        atoms.calc = calc
        e_err.append((atoms.get_potential_energy() - ref_e) / len(atoms))
        f_err.append((atoms.get_forces() - ref_f).ravel())
        s_err.append((atoms.get_stress(voigt=False) - ref_s).ravel())
    e_mae = 1e3 * np.mean(np.abs(e_err))
    f_mae = 1e3 * np.mean(np.abs(np.concatenate(f_err)))
    s_rmse = 1e3 * np.sqrt(np.mean(np.concatenate(s_err) ** 2))
    lines = {line[:22].strip(): line[22:].split() for line in printed.splitlines()}
    assert float(lines["energy (meV/atom)"][0]) == pytest.approx(e_mae, abs=2e-3)
    assert float(lines["forces (meV/Å)"][0]) == pytest.approx(f_mae, abs=2e-3)
    assert float(lines["stress (meV/Å³)"][1]) == pytest.approx(s_rmse, abs=2e-3)
    pred = read(tmp_path / "pred.extxyz", ":")
    assert len(pred) == 10 and "pred_forces" in pred[0].arrays
    assert (tmp_path / "parity.png").exists()
    # deploy: the checkpoint's EMA weights give the same model as the trainer's export (same epoch)
    assert main(["deploy", str(tmp_path / "run" / "checkpoint_best.pt"), str(tmp_path / "deployed.pth")]) == 0
    assert_same_weights(load_model(model_path), load_model(tmp_path / "deployed.pth"))
    assert main(["eval", model_path, str(tmp_path / "nope.extxyz")]) == 2


def test_graph_dataset_matches_calculator_neighbours(emt_files):
    frames = read_frames(emt_files / "val.extxyz")
    data = GraphDataset(frames, r_max=4.0)
    from ase.neighborlist import neighbor_list

    i, j = neighbor_list("ij", frames[0].atoms, 4.0)
    assert data[0]["edge_index"].shape[1] == len(i)


def test_allegro_trains_from_a_config(emt_files, tmp_path):
    cfg = config_from_dict({
        "run_dir": str(tmp_path / "allegro"),
        "data": {"train": "train.extxyz", "val": "val.extxyz"},
        "model": {"architecture": "allegro", "r_max": 4.0, "l_max": 1, "num_layers": 1, "num_scalar_features": 8,
                  "num_tensor_features": 2, "mlp_hidden": 8},
        "training": {"batch_size": 8, "max_epochs": 2, "num_threads": 2},
    }, base_dir=emt_files)
    summary = train(cfg, show_progress=False, echo=False)
    model = load_model(summary["model_path"])
    assert model.spec.architecture == "allegro" and model.spec.num_tensor_features == 2
    with pytest.raises(ValueError, match="did you mean 'num_tensor_features'"):
        config_from_dict({"data": {"train": "x"}, "model": {"architecture": "allegro", "num_tensor_feature": 2}})


@pytest.mark.slow
def test_fine_tuning_starts_from_the_given_model(emt_files, tmp_path):
    base = train(tiny_config(emt_files, tmp_path / "base", max_epochs=2), show_progress=False, echo=False)
    raw = {"run_dir": str(tmp_path / "tuned"), "data": {"train": "train.extxyz", "val": "val.extxyz"},
           "model": {"dtype": "float64", "init_from": base["model_path"]},
           "training": {"batch_size": 4, "max_epochs": 1, "lr": 1e-12, "num_threads": 2}}
    # an epoch at a negligible learning rate leaves the given model (weights, shifts and scale) as it
    # was: the run started from it, not from a fresh model built from the data's statistics
    tuned = train(config_from_dict(raw, base_dir=emt_files), show_progress=False, echo=False)
    start, end = load_model(base["model_path"]), load_model(tuned["model_path"])
    for (k, x), (_, y) in zip(start.state_dict().items(), end.state_dict().items()):
        assert torch.allclose(x, y, rtol=0, atol=1e-9), k
    assert "fine-tuning" in (tmp_path / "tuned" / "log.txt").read_text()
    # from a checkpoint (its EMA weights) at a real learning rate: the first epoch is already as good
    # as the base model, far better than a fresh model's first epoch
    raw.update(run_dir=str(tmp_path / "tuned2"))
    raw["model"]["init_from"] = str(tmp_path / "base" / "checkpoint_best.pt")
    raw["training"]["lr"] = 1e-3
    train(config_from_dict(raw, base_dir=emt_files), show_progress=False, echo=False)
    base_rows = list(csv.DictReader(open(tmp_path / "base" / "metrics.csv")))
    tuned_rows = list(csv.DictReader(open(tmp_path / "tuned2" / "metrics.csv")))
    assert float(tuned_rows[0]["val_forces_mae"]) < 0.8 * float(base_rows[0]["val_forces_mae"])
    # options that contradict the model are refused, and a missing file is named
    raw["model"]["r_max"] = 3.0
    raw["run_dir"] = str(tmp_path / "tuned3")
    with pytest.raises(ValueError, match="r_max"):
        train(config_from_dict(raw, base_dir=emt_files), show_progress=False, echo=False)
    raw["model"] = {"init_from": "missing.pth"}
    with pytest.raises(FileNotFoundError, match="init_from"):
        train(config_from_dict(raw, base_dir=emt_files), show_progress=False, echo=False)


def test_fine_tuning_may_add_the_zbl_repulsion(tmp_path):
    """The ZBL term has no weights: a model trained without it is fine-tuned with it, weights unchanged."""
    from equicalc.model_io import build_model, save_model
    from equicalc.train.loop import _initial_model

    base = build_model("nequip", species=["Cu", "Zr"], dtype="float64", seed=0, r_max=4.0, num_layers=1,
                       num_features=4, zbl=False)
    save_model(base, tmp_path / "base.pth")
    cfg = config_from_dict({"data": {"train": "x.extxyz"}, "model": {
        "init_from": "base.pth", "dtype": "float64", "zbl": True, "zbl_outer": 0.5}}, base_dir=tmp_path)
    tuned = _initial_model(cfg)
    assert tuned.spec.zbl and tuned.spec.zbl_outer == 0.5 and tuned.repulsion is not None
    assert_same_weights(base, tuned)
    cfg.model.options["num_layers"] = 2  # anything else must agree with the model
    with pytest.raises(ValueError, match="num_layers"):
        _initial_model(cfg)


def test_given_shifts_replace_a_fine_tuned_models_and_stay_fixed(tmp_path):
    """``model.shifts`` with ``init_from``: the start's weights, the given shifts, not trained; a NequIP atom
    without neighbours then has exactly the given energy."""
    from ase import Atoms

    from equicalc import EquiCalc
    from equicalc.model_io import build_model, save_model
    from equicalc.train.loop import _initial_model, _start_model

    base = build_model("nequip", species=["Cu", "Zr"], dtype="float64", seed=0, r_max=4.0, num_layers=1,
                       num_features=4, shifts={"Cu": -3.1, "Zr": -6.0})
    save_model(base, tmp_path / "base.pth")
    cfg = config_from_dict({"data": {"train": "x.extxyz"}, "model": {
        "init_from": "base.pth", "dtype": "float64", "shifts": {"Cu": 0.0, "Zr": 0.25}}}, base_dir=tmp_path)
    lines = []
    tuned = _start_model(cfg, {}, None, _initial_model(cfg), lines.append)
    assert tuned.scale_shift.shifts.tolist() == [0.0, 0.25] and not tuned.scale_shift.shifts.requires_grad
    assert "its shifts: Cu -3.100, Zr -6.000 eV" in lines[0]
    for k, x in base.state_dict().items():
        if k != "scale_shift.shifts":
            assert torch.equal(x, tuned.state_dict()[k]), k
    atom = Atoms("Zr", positions=[[0, 0, 0]])
    atom.calc = EquiCalc(tuned, dtype="float64")
    assert atom.get_potential_energy() == pytest.approx(0.25, abs=1e-12)


def test_given_shifts_replace_the_least_squares_ones(emt_files, tmp_path):
    """``model.shifts`` sets the per-species energies of a fresh model (checked per species); Allegro then gives
    an atom without neighbours exactly that energy."""
    from ase import Atoms

    from equicalc import EquiCalc
    from equicalc.train.loop import _shifts

    stats = {"species": ["Cu", "Zr"], "energy_shifts": {"Cu": -3.1, "Zr": -6.0}}
    raw = {"data": {"train": "x.extxyz"}, "model": {"architecture": "allegro", "shifts": {"Zr": 0.25, "Cu": 0}}}
    cfg = config_from_dict(raw)
    assert _shifts(cfg, stats) == {"Cu": 0.0, "Zr": 0.25}
    assert _shifts(config_from_dict({"data": {"train": "x.extxyz"}}), stats) == stats["energy_shifts"]
    for shifts, message in (({"Cu": 0.0}, r"missing \['Zr'\]"), ({"Cu": 0, "Zr": 0, "Au": 0}, r"not in the model")):
        raw["model"]["shifts"] = shifts
        with pytest.raises(ValueError, match=message):
            _shifts(config_from_dict(raw), stats)
    raw["model"]["shifts"] = {"Cu": "low"}
    with pytest.raises(ValueError, match="'model.shifts.Cu' must be a number"):
        config_from_dict(raw)
    # a whole run: the model file's isolated Cu atom has the given energy
    model = {"architecture": "allegro", "r_max": 4.0, "l_max": 1, "num_layers": 1, "num_scalar_features": 8,
             "num_tensor_features": 2, "mlp_hidden": 8, "num_basis": 6, "dtype": "float64",
             "shifts": {"Cu": 0.125, "Au": -0.5}}
    raw = {"run_dir": str(tmp_path / "run"), "data": {"train": "train.extxyz"}, "model": model,
           "training": {"batch_size": 4, "max_epochs": 1, "num_threads": 2}}
    train(config_from_dict(raw, base_dir=emt_files), show_progress=False, echo=False)
    raw["training"]["max_epochs"] = 2  # and after a restart: the shifts are not trained
    run = train(config_from_dict(raw, base_dir=emt_files), restart=True, show_progress=False, echo=False)
    atom = Atoms("Cu", positions=[[0, 0, 0]])
    atom.calc = EquiCalc(run["model_path"], dtype="float64")
    assert atom.get_potential_energy() == pytest.approx(0.125, abs=1e-12)


def test_error_metrics_by_group_match_each_subset(emt_files, capsys):
    from equicalc.model_io import build_model
    from equicalc.evaluate import error_metrics, error_metrics_by_group, predict

    model = build_model("nequip", species=["Cu", "Au"], dtype="float64", seed=0, r_max=4.0, num_layers=1,
                        num_features=8, num_basis=4, radial_hidden=8)
    frames = read_frames(emt_files / "val.extxyz")
    frames[3].stress = None  # a frame without stress still counts for energy and forces
    groups = ["odd" if k % 2 else "even" for k in range(len(frames))]
    by_group = error_metrics_by_group(predict(model, GraphDataset(frames, 4.0)).arrays(), groups)
    assert sorted(by_group) == ["even", "odd"] and by_group["odd"]["frames"] == 5
    for label in ("even", "odd"):
        subset = [f for f, g in zip(frames, groups) if g == label]
        direct = error_metrics(predict(model, GraphDataset(subset, 4.0)).arrays())
        for key, value in direct.items():
            assert by_group[label][key] == pytest.approx(value, rel=1e-9), (label, key)
    path = emt_files / "val.extxyz"
    model_path = emt_files / "group_model.pth"
    from equicalc.model_io import save_model

    save_model(model, model_path)
    assert main(["eval", str(model_path), str(path), "--by", "config_type", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "by config_type" in out and "(none)" in out  # the EMT frames carry no config_type


def test_config_type_weights_weigh_each_frames_errors_in_training_and_validation(tmp_path):
    """``loss.config_type_weights`` multiplies every error of its frames: the loss is linear in the factors, the
    same over one batch (training) as in ``validate``, and a misspelt config_type is refused by name."""
    from dataclasses import replace

    from equicalc.data import collate
    from equicalc.nn.forces import compute_properties
    from equicalc.evaluate import stress_from_virial
    from equicalc.train.loop import loss_terms, setup, validate

    frames = emt_frames(9, seed=3)
    for k, atoms in enumerate(frames):
        atoms.info["config_type"] = "strained" if k % 3 == 0 else "bulk"
    write(tmp_path / "train.extxyz", frames)
    write(tmp_path / "val.extxyz", frames)
    base = training_config(tmp_path, tmp_path / "run")
    cfg = replace(base, loss=replace(base.loss, kind="huber", huber_delta=0.05, config_type_weights={"strained": 3.0}))
    run = setup(cfg, restart=False, echo=False)
    weights = run.frame_weights["val"]
    assert weights.tolist() == [3.0 if k % 3 == 0 else 1.0 for k in range(9)]
    assert "strained ×3 (3 training frames)" in (tmp_path / "run" / "log.txt").read_text()

    batch = collate([run.data["val"][k] for k in range(9)])
    out = compute_properties(run.model, batch.graph, forces=True, stress=True)
    out["stress"] = stress_from_virial(out["virial"], batch)
    out = {k: v.detach() for k, v in out.items()}

    def batch_loss(factors):
        return float(loss_terms(out, batch, cfg.loss, frame_weights=torch.as_tensor(factors))["total"])

    strained = (np.arange(9) % 3 == 0).astype(float)
    assert batch_loss(weights) == pytest.approx(batch_loss(np.ones(9)) + 2 * batch_loss(strained), rel=1e-12)
    assert batch_loss(np.ones(9)) == pytest.approx(float(loss_terms(out, batch, cfg.loss)["total"]), rel=1e-12)
    assert validate(run.model, run.data["val"], cfg, run.device, frame_weights=weights)["loss"] == \
        pytest.approx(batch_loss(weights), rel=1e-10)
    summary = train(cfg, show_progress=False, echo=False, overwrite=True, stop_after_epochs=1)  # the training steps
    assert summary["epoch"] == 1

    misspelt = replace(cfg, loss=replace(cfg.loss, config_type_weights={"strianed": 3.0}))
    with pytest.raises(ValueError, match="no training frame has config_type 'strianed'; did you mean 'strained'"):
        setup(misspelt, restart=False, echo=False, overwrite=True)
    with pytest.raises(ValueError, match=r"'loss.config_type_weights.bulk' must be >= 0"):
        config_from_dict({"data": {"train": "x"}, "loss": {"config_type_weights": {"bulk": -1}}})
