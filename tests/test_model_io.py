"""model.pth: exact round trip, data only, clear errors for bad files."""
import pickle

import numpy as np
import pytest
import torch

from equicalc import EquiCalc, build_model, load_model, save_model
from equicalc.model_io import FORMAT_VERSION
from conftest import random_cuzr, small_model


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
    with pytest.raises(ValueError, match="unexpected keyword"):
        build_model(species=["Cu"], n_layers=3)
    with pytest.raises(ValueError, match="shifts"):
        build_model(species=["Cu", "Zr"], shifts={"Ni": 1.0})
