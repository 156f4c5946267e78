"""model.pth: exact round trip, data only, clear errors for bad files."""
import pickle

import numpy as np
import pytest
import torch

from equicalc import EquiCalc, build_model, load_model, save_model
from equicalc.model_io import FORMAT_VERSION
from conftest import CUZR, assert_same_weights, cuzr_script, random_cuzr, small_model


@pytest.mark.parametrize("architecture", ["nequip", "allegro"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_is_exact(tmp_path, dtype, architecture):
    model = small_model(architecture=architecture, r_max=4.5, l_max=1, dtype=dtype, seed=1,
                        shifts={"Cu": -3.1, "Zr": -6.4}, scales=0.5)
    save_model(model, tmp_path / "m.pth", metadata={"note": "test"})
    loaded = load_model(tmp_path / "m.pth")
    assert loaded.config == model.config
    assert next(loaded.parameters()).dtype == next(model.parameters()).dtype
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    assert loaded.metadata["note"] == "test" and loaded.metadata["species"] == ["Cu", "Zr"]
    atoms = random_cuzr(seed=2)
    r1 = EquiCalc(model).calculate_batch([atoms])[0]
    r2 = EquiCalc(tmp_path / "m.pth").calculate_batch([atoms])[0]
    assert r1["energy"] == r2["energy"]
    np.testing.assert_array_equal(r1["forces"], r2["forces"])


def test_same_seed_same_model():
    a = build_model(species=["Cu"], num_features=4, num_layers=1, seed=7)
    b = build_model(species=["Cu"], num_features=4, num_layers=1, seed=7)
    for x, y in zip(a.parameters(), b.parameters()):
        assert torch.equal(x, y)


def test_file_is_plain_data(tmp_path):
    model = build_model(species=["Cu"], num_features=4, num_layers=1, seed=0)
    save_model(model, tmp_path / "m.pth")
    payload = torch.load(tmp_path / "m.pth", weights_only=True)
    assert payload["format_version"] == FORMAT_VERSION
    assert set(payload) >= {"config", "state_dict", "architecture", "dtype", "metadata"}


def test_corrupt_and_foreign_files(tmp_path):
    bad = tmp_path / "corrupt.pth"
    bad.write_bytes(b"this is not a model")
    with pytest.raises(ValueError, match="not a readable equicalc model file"):
        load_model(bad)
    model = build_model(species=["Cu"], num_features=4, num_layers=1, seed=0)
    save_model(model, tmp_path / "m.pth")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes((tmp_path / "m.pth").read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable"):
        load_model(truncated)
    foreign = tmp_path / "foreign.pth"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ValueError, match="not an equicalc model file"):
        load_model(foreign)


class _Evil:
    def __reduce__(self):
        return (print, ("code from a model file ran",))


def test_loading_never_runs_code(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"format": "equicalc-model", "payload": _Evil()}, f)
    with pytest.raises(ValueError, match="not a readable"):
        load_model(path)


def test_newer_format_is_refused(tmp_path):
    model = build_model(species=["Cu"], num_features=4, num_layers=1, seed=0)
    save_model(model, tmp_path / "m.pth")
    payload = torch.load(tmp_path / "m.pth", weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, tmp_path / "new.pth")
    with pytest.raises(ValueError, match="newer than this equicalc supports"):
        load_model(tmp_path / "new.pth")


def test_build_model_errors():
    with pytest.raises(ValueError, match="architecture"):
        build_model("mace")
    with pytest.raises(ValueError, match="not a chemical symbol"):
        build_model(species=["Qq"])
    with pytest.raises(ValueError, match="r_max"):
        build_model(species=["Cu"], r_max=-1)
    with pytest.raises(ValueError, match="unknown key 'n_layers'; did you mean 'num_layers'"):
        build_model(species=["Cu"], n_layers=3)
    with pytest.raises(ValueError, match="'num_features' must be an integer"):
        build_model(species=["Cu"], num_features=4.5)
    with pytest.raises(ValueError, match="'num_layers' must be >= 1"):
        build_model(species=["Cu"], num_layers=0)
    with pytest.raises(ValueError, match="shifts"):
        build_model(species=["Cu", "Zr"], shifts={"Ni": 1.0})


def test_one_spec_per_architecture():
    from equicalc.nn import AllegroSpec, NequIPSpec, spec_from_dict

    spec = NequIPSpec(species=("Cu", 40), r_max=4, num_features=8)
    assert spec.species == ("Cu", "Zr") and spec.r_max == 4.0 and isinstance(spec.r_max, float)
    assert spec_from_dict("nequip", spec.to_dict()) == spec
    model = build_model(spec, seed=0)
    assert model.spec == spec and model.config == spec.to_dict()
    with pytest.raises(ValueError, match="must be > 0"):
        AllegroSpec(species=["Cu"], r_max=0.0)
    with pytest.raises(ValueError, match="did you mean 'mlp_hidden'"):
        spec_from_dict("allegro", {"species": ["Cu"], "mlp_hiden": 8})
    with pytest.raises(ValueError, match="hyperparameters in the spec"):
        build_model(spec, num_layers=2)


def test_checkpoints_and_model_files_load_through_one_reader(tmp_path):
    """A checkpoint's record is a model file's; both load with load_model and the same checks."""
    from equicalc.model_io import CHECKPOINT_FORMAT_NAME, CHECKPOINT_FORMAT_VERSION, model_record

    model = small_model(seed=3)
    ema = small_model(seed=4)
    record = model_record(model)
    torch.save({"format": CHECKPOINT_FORMAT_NAME, "format_version": CHECKPOINT_FORMAT_VERSION, "model": record,
                "ema_state_dict": model_record(ema)["state_dict"], "state": {"epoch": 5}}, tmp_path / "c.pt")
    for ema_weights, expected in ((True, ema), (False, model)):
        assert_same_weights(load_model(tmp_path / "c.pt", ema=ema_weights), expected, f"ema={ema_weights}")
    assert load_model(tmp_path / "c.pt").metadata["training"]["epoch"] == 5
    record["config"]["num_layers"] = 3  # weights of 2 layers: refused with the file named
    torch.save({"format": CHECKPOINT_FORMAT_NAME, "format_version": 1, "model": record}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="bad.pt: invalid model: weights do not match"):
        load_model(tmp_path / "bad.pt", ema=False)
    record["config"]["num_layer"] = 3
    torch.save({"format": CHECKPOINT_FORMAT_NAME, "format_version": 1, "model": record}, tmp_path / "bad2.pt")
    with pytest.raises(ValueError, match="bad2.pt: invalid model: .*did you mean 'num_layers'"):
        load_model(tmp_path / "bad2.pt")


def test_files_written_before_the_specs_load_unchanged():
    """The training runs in data/cuzr were written by earlier versions: they load, a finished run's model.pth
    holds its best checkpoint's EMA weights, and each shipped model (saved again with its test errors) has the
    weights of the file that ``data/cuzr/ship.py`` names as its source."""
    from equicalc.models import model_path

    for run in ("finetune", "allegro"):
        assert_same_weights(load_model(CUZR / run / "checkpoint_best.pt"), load_model(CUZR / run / "model.pth"), run)
    for name, source in cuzr_script("ship").SOURCES.items():
        exported, shipped = load_model(source), load_model(model_path(name))
        assert_same_weights(exported, shipped, name)
        assert exported.spec == shipped.spec


def test_allegro_tensor_track_keeps_its_l1_part_and_old_files_keep_theirs(tmp_path):
    """Allegro's products reach every irrep of the tensor track, so the l = 1 part that the second layer
    receives is not empty; files written before ``full_products`` existed load with the equal-irrep
    products they were trained with (the first-stage 5 Å Allegro run, ``data/cuzr/allegro``)."""
    from equicalc.graph import AtomicGraph
    from equicalc.nn.forces import compute_properties

    model = small_model(architecture="allegro")
    seen = []
    model.layers[1].register_forward_pre_hook(lambda module, args: seen.append(args[1][1].detach()))
    compute_properties(model, AtomicGraph.from_atoms(random_cuzr(seed=2)).build_neighbors(model.r_max))
    assert seen[0].abs().max() > 1e-3  # the l = 1 block of the track
    old = load_model(CUZR / "allegro" / "model.pth")
    assert old.spec.full_products is False
    assert all(ir.l == 0 for _, ir in old.layers[0].tp.irreps_out)
    save_model(old, tmp_path / "old.pth")
    assert load_model(tmp_path / "old.pth").spec.full_products is False  # the option is now written out
