"""The shipped Cu–Zr models load, reproduce the test errors their README states, and run MD."""
import re
from pathlib import Path

import numpy as np
import pytest

from equicalc import EquiCalc, load_model
from equicalc.data import GraphDataset, read_frames
from equicalc.train.metrics import error_metrics, predict

CUZR = Path(__file__).resolve().parent.parent / "data" / "cuzr"


MODELS = {"nequip": ("model.pth", "test-errors"), "allegro": ("allegro/model.pth", "allegro-test-errors")}


def stated_errors(marker: str, readme: Path = CUZR / "README.md"):
    """A test-split table of a README between ``<!-- marker -->`` comments: {quantity: (MAE, RMSE)}."""
    text = readme.read_text()
    block = text[text.index(f"<!-- {marker} -->"):text.index(f"<!-- end {marker} -->")]
    out = {}
    for key, label in (("energy", "energy"), ("forces", "forces"), ("stress", "stress")):
        m = re.search(rf"^\| {label} \([^)]*\) \| ([0-9.]+) \| ([0-9.]+) \|", block, re.M)
        assert m, f"no {label} row in the README's test-error table"
        out[key] = (float(m.group(1)), float(m.group(2)))
    return out


@pytest.mark.parametrize("architecture", sorted(MODELS))
def test_test_split_errors_match_the_readme(architecture):
    path, marker = MODELS[architecture]
    model = load_model(CUZR / path)
    assert model.architecture == architecture
    frames = read_frames(CUZR / "test.extxyz.gz")
    measured = error_metrics(predict(model, GraphDataset(frames, model.r_max), batch_size=16).arrays())
    for key, (mae, rmse) in stated_errors(marker).items():
        assert measured[f"{key}_mae"] == pytest.approx(mae, abs=0.006 + 0.002 * mae), key
        assert measured[f"{key}_rmse"] == pytest.approx(rmse, abs=0.006 + 0.002 * rmse), key


def test_top_level_readme_states_the_same_errors():
    assert stated_errors("test-errors", CUZR.parent.parent / "README.md") == stated_errors("test-errors")


@pytest.mark.parametrize("architecture", sorted(MODELS))
def test_shipped_model_runs_stable_md(architecture):
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import thermalize_momenta

    from equicalc.cli import cuzr_liquid_cell

    atoms = cuzr_liquid_cell(108, seed=3, volume_per_atom=17.0)
    atoms.calc = EquiCalc(CUZR / MODELS[architecture][0])
    thermalize_momenta(atoms, temperature_K=1500, rng=np.random.default_rng(3))
    Langevin(atoms, 2 * units.fs, temperature_K=1500, friction=0.02 / units.fs,
             rng=np.random.default_rng(4)).run(60)
    assert 500 < atoms.get_temperature() < 3000
    assert np.isfinite(atoms.get_potential_energy())
    assert -5.5 < atoms.get_potential_energy() / len(atoms) < -3.5
