"""The shipped Cu–Zr model loads, reproduces the test errors its README states, and runs MD."""
import re
from pathlib import Path

import numpy as np
import pytest

from equicalc import EquiCalc, load_model
from equicalc.data import GraphDataset, read_frames
from equicalc.train.metrics import error_metrics, predict

CUZR = Path(__file__).resolve().parent.parent / "data" / "cuzr"


def stated_errors():
    """The test-split table of data/cuzr/README.md: {quantity: (MAE, RMSE)}."""
    text = (CUZR / "README.md").read_text()
    block = text[text.index("<!-- test-errors -->"):text.index("<!-- end test-errors -->")]
    out = {}
    for key, label in (("energy", "energy"), ("forces", "forces"), ("stress", "stress")):
        m = re.search(rf"^\| {label} \([^)]*\) \| ([0-9.]+) \| ([0-9.]+) \|", block, re.M)
        assert m, f"no {label} row in the README's test-error table"
        out[key] = (float(m.group(1)), float(m.group(2)))
    return out


def test_test_split_errors_match_the_readme():
    model = load_model(CUZR / "model.pth")
    frames = read_frames(CUZR / "test.extxyz.gz")
    measured = error_metrics(predict(model, GraphDataset(frames, model.r_max), batch_size=16).arrays())
    for key, (mae, rmse) in stated_errors().items():
        assert measured[f"{key}_mae"] == pytest.approx(mae, abs=0.006 + 0.002 * mae), key
        assert measured[f"{key}_rmse"] == pytest.approx(rmse, abs=0.006 + 0.002 * rmse), key


def test_shipped_model_runs_stable_md():
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import thermalize_momenta

    from equicalc.cli import cuzr_liquid_cell

    atoms = cuzr_liquid_cell(108, seed=3, volume_per_atom=17.0)
    atoms.calc = EquiCalc(CUZR / "model.pth")
    thermalize_momenta(atoms, temperature_K=1500, rng=np.random.default_rng(3))
    Langevin(atoms, 2 * units.fs, temperature_K=1500, friction=0.02 / units.fs,
             rng=np.random.default_rng(4)).run(60)
    assert 500 < atoms.get_temperature() < 3000
    assert np.isfinite(atoms.get_potential_energy())
    assert -5.5 < atoms.get_potential_energy() / len(atoms) < -3.5
