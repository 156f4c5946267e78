"""The shipped Cu–Zr models load, reproduce the test errors their README states, and run MD."""
import re
from pathlib import Path

import numpy as np
import pytest

from equicalc import EquiCalc, load_model
from equicalc.data import GraphDataset, read_frames
from equicalc.train.metrics import error_metrics, predict

CUZR = Path(__file__).resolve().parent.parent / "data" / "cuzr"


# model file, README marker of its test-error table, and whether that table is over the condensed test
# frames only: the Allegro model is the first training stage, from before the `sparse` data stage
MODELS = {"nequip": ("model.pth", "test-errors", False), "allegro": ("allegro/model.pth", "allegro-test-errors", True)}
SPARSE_TYPES = ("isolated_atom", "dimer", "cluster", "expanded")


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
    path, marker, condensed_only = MODELS[architecture]
    model = load_model(CUZR / path)
    assert model.architecture == architecture
    frames = read_frames(CUZR / "test.extxyz.gz")
    if condensed_only:
        frames = [f for f in frames if f.atoms.info["config_type"] not in SPARSE_TYPES]
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


def test_shipped_model_liquid_is_stable_in_npt_at_2200_k(tmp_path):
    """The melt of the reference data's protocol: 2200 K at zero pressure, from a random start. A model
    that knows nothing of low densities lets this liquid swell without bound (quench then stops)."""
    from equicalc.analysis.quench import quench
    from equicalc.cli import cuzr_liquid_cell

    res = quench(cuzr_liquid_cell(108, seed=3, volume_per_atom=17.5), EquiCalc(CUZR / "model.pth"),
                 t_melt=2200.0, t_final=2100.0, cooling_rate=1000.0, melt_time=2.0, hold_time=0.0,
                 timestep=2.0, trajectory_interval=0, checkpoint_interval=1000, directory=tmp_path,
                 show_progress=False, seed=3)
    v = res.data["volume_per_atom"]
    # the EAM's liquid at 2200 K: about 17.95 Å^3/atom; 108 atoms fluctuate by about ±0.7
    assert v.max() < 21.0 and v[len(v) // 2:].mean() < 19.0, (v.max(), v[len(v) // 2:].mean())
