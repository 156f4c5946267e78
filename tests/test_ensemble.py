"""Replica ensembles: each replica follows the trajectory it follows alone, with one batched call per step."""
import warnings

import numpy as np
import pytest
from ase import units
from ase.calculators.emt import EMT
from ase.md.langevinbaoab import LangevinBAOAB
from ase.md.velocitydistribution import thermalize_momenta
from ase.md.verlet import VelocityVerlet

from conftest import SHORT_QUENCH, cu_au_alloy, random_cuzr, small_model
from equicalc import EquiCalc
from equicalc.ensemble import BatchedCalculators


def _npt(atoms, seed):
    """LangevinBAOAB NPT, as the quench uses it (it computes forces and stress when built)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LangevinBAOAB(atoms, 2 * units.fs, temperature_K=1200, externalstress=0.0, hydrostatic=True,
                             T_tau=50 * units.fs, P_tau=500 * units.fs, rng=np.random.default_rng(seed))


def _starts(n):
    starts = []
    for k in range(n):
        atoms = random_cuzr(seed=30 + k, rattle=0.05)
        thermalize_momenta(atoms, temperature_K=1200, rng=np.random.default_rng(k))
        starts.append(atoms)
    return starts


@pytest.mark.parametrize("skin", [0.0, 0.5])
def test_replicas_in_an_ensemble_follow_their_solo_trajectories(skin):
    calc = EquiCalc(small_model(), skin=skin)
    steps, n = 15, 3
    solo = []
    for k, atoms in enumerate(_starts(n)):
        atoms.calc = calc
        _npt(atoms, k).run(steps)
        solo.append(atoms)
    group = BatchedCalculators(calc, n)
    batch_sizes = []
    original = calc.calculate_batch

    def counting(structures, **kwargs):
        batch_sizes.append(len(structures))
        return original(structures, **kwargs)

    calc.calculate_batch = counting
    replicas = _starts(n)
    dyns = []
    for k, atoms in enumerate(replicas):
        atoms.calc = group[k]
        dyns.append(_npt(atoms, k))  # built outside the run: evaluated at once, not pooled
    built = len(batch_sizes)
    group.run([lambda d=d: d.run(steps) for d in dyns])
    assert group.calls == steps and batch_sizes[built:] == [n] * steps  # one call per step for all replicas
    lists = group._lists
    assert all(nl.calls == steps for nl in lists)
    if skin > 0:  # each replica's list is reused between steps, and the results are those of fresh builds
        assert all(nl.builds < steps for nl in lists)
    for alone, together in zip(solo, replicas):
        np.testing.assert_allclose(together.positions, alone.positions, rtol=0, atol=1e-10)
        np.testing.assert_allclose(together.cell.array, alone.cell.array, rtol=0, atol=1e-10)
        assert together.get_potential_energy() == pytest.approx(alone.get_potential_energy(), abs=1e-9)


def test_a_calculator_without_batches_is_called_once_per_replica():
    from ase.build import bulk

    starts = []
    for k in range(2):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
        atoms.rattle(0.05, seed=k)
        starts.append(atoms)
    solo = [a.copy() for a in starts]
    for atoms in solo:
        atoms.calc = EMT()
        VelocityVerlet(atoms, 2 * units.fs).run(10)
    group = BatchedCalculators(EMT(), 2)
    for k, atoms in enumerate(starts):
        atoms.calc = group[k]
    group.run([lambda a=a: VelocityVerlet(a, 2 * units.fs).run(10) for a in starts])
    for alone, together in zip(solo, starts):
        np.testing.assert_allclose(together.positions, alone.positions, rtol=0, atol=1e-12)


def test_unequal_replicas_and_failures_are_errors():
    with pytest.raises(ValueError, match="positive integer"):
        BatchedCalculators(EMT(), 0)
    from ase.build import bulk

    group = BatchedCalculators(EMT(), 2)
    pair = [bulk("Cu", "fcc", a=3.6, cubic=True) for _ in range(2)]
    for k, atoms in enumerate(pair):
        atoms.rattle(0.05, seed=k)
        atoms.calc = group[k]
    with pytest.raises(RuntimeError, match="unequally often"):
        group.run([lambda: VelocityVerlet(pair[0], 1 * units.fs).run(5),
                   lambda: VelocityVerlet(pair[1], 1 * units.fs).run(2)])

    def broken():
        raise KeyError("a replica's own error")

    with pytest.raises(KeyError, match="a replica's own error"):
        group.run([lambda: VelocityVerlet(pair[0], 1 * units.fs).run(5), broken])
    assert group.run([lambda: 1, lambda: 2]) == [1, 2]  # usable again after a failure


# -- melt-quench ensembles ------------------------------------------------------------------------------------

QUENCH = dict(SHORT_QUENCH, relax_steps=5)


def _calc():
    return EquiCalc(small_model(species=["Cu", "Au"], shifts={"Cu": -3.5, "Au": -3.8}), skin=0.0)


@pytest.mark.slow
def test_a_quench_ensemble_is_its_replicas_run_alone(tmp_path):
    from equicalc.analysis import EnsembleQuenchResult, quench

    calc = _calc()
    ensemble = quench([cu_au_alloy(0), cu_au_alloy(1)], calc, replicas=2, directory=tmp_path / "ensemble", **QUENCH)
    assert isinstance(ensemble, EnsembleQuenchResult) and len(ensemble.replicas) == 2
    for k in range(2):
        alone = quench(cu_au_alloy(k), calc, directory=tmp_path / f"alone{k}", **dict(QUENCH, seed=1 + k))
        together = ensemble.replicas[k]
        assert together.protocol == alone.protocol  # the replica's own seed
        for column in ("temperature_K", "volume_per_atom", "enthalpy_per_atom"):
            np.testing.assert_allclose(together.data[column], alone.data[column], rtol=1e-8, err_msg=column)
    tg = ensemble.glass_transition("volume", method="windows", liquid_range=(880, 1200), glass_range=(600, 880),
                                   width=50.0)
    assert len(tg.per_replica) == 2 and tg.tg == pytest.approx(np.mean(tg.per_replica))
    fig = ensemble.plot(tmp_path / "ensemble.png")
    assert len(fig.axes[0].lines) >= 2 and (tmp_path / "ensemble.png").stat().st_size > 1000


@pytest.mark.slow
def test_an_ensemble_grows_batch_by_batch_and_loads_from_its_records(tmp_path, monkeypatch):
    """Replica 1 run later on its own (``first_replica=1``) is replica 1 of the ensemble run at once; an ensemble
    whose state files are gone loads from its records, the protocol read back from ``log.txt``; its finished
    replicas load while another process starts or restarts some of them."""
    import importlib

    from equicalc.analysis import EnsembleQuenchResult, quench

    qmod = importlib.import_module("equicalc.analysis.quench")

    calc = _calc()
    together = quench([cu_au_alloy(0), cu_au_alloy(1)], calc, replicas=2, directory=tmp_path / "together", **QUENCH)
    grown = tmp_path / "grown"
    quench([cu_au_alloy(0)], calc, replicas=1, first_replica=0, directory=grown / "replica_0", **QUENCH)
    later = quench([cu_au_alloy(1)], calc, replicas=1, first_replica=1, directory=grown, **QUENCH)
    assert later.directory == grown / "replica_1" and later.protocol == together.replicas[1].protocol
    assert EnsembleQuenchResult.load(grown).indices == [0, 1]
    np.testing.assert_allclose(later.data["volume_per_atom"], together.replicas[1].data["volume_per_atom"], rtol=1e-8)
    for state in (tmp_path / "together").glob("replica_*/state*.json"):
        state.unlink()
    loaded = EnsembleQuenchResult.load(tmp_path / "together")
    assert [r.protocol for r in loaded.replicas] == [r.protocol for r in together.replicas]
    assert all(r.finished for r in loaded.replicas)
    assert len(EnsembleQuenchResult.load(tmp_path / "together", finished=True).replicas) == 2
    curve, (w0, w1) = loaded.mean_windows("enthalpy"), (r.windows() for r in together.replicas)
    np.testing.assert_allclose(curve["mean"], (w0["enthalpy_per_atom"] + w1["enthalpy_per_atom"]) / 2, rtol=1e-12)
    np.testing.assert_allclose(curve["error"], abs(w0["enthalpy_per_atom"] - w1["enthalpy_per_atom"]) / 2, rtol=1e-9)
    with pytest.raises(ValueError, match="two or more replicas"):
        EnsembleQuenchResult(grown, [later]).mean_windows()
    (grown / "replica_2").mkdir()  # started by another process: its log written, no records yet
    (grown / "replica_2" / "log.txt").write_text((grown / "replica_1" / "log.txt").read_text())
    assert EnsembleQuenchResult.load(grown, finished=True).indices == [0, 1]
    with pytest.raises(FileNotFoundError):
        EnsembleQuenchResult.load(grown)
    with open(grown / "replica_0" / "quench.csv", "a") as fh:  # a row being written as the records are read
        fh.write("13500,4")
    np.testing.assert_array_equal(EnsembleQuenchResult.load(grown, finished=True).replicas[0].data["step"],
                                  together.replicas[0].data["step"])
    read_csv = qmod._read_csv

    def restarted_meanwhile(path):  # another process starts replica 1 afresh after the folders were listed
        if path.parent.name == "replica_1":
            path.unlink(missing_ok=True)
        return read_csv(path)

    monkeypatch.setattr(qmod, "_read_csv", restarted_meanwhile)
    assert EnsembleQuenchResult.load(grown, finished=True).indices == [0]
    with pytest.raises(ValueError, match="first_replica must be a non-negative integer"):
        quench(cu_au_alloy(0), calc, first_replica=-1, directory=tmp_path / "refused", **QUENCH)


class _Kill(Exception):
    pass


@pytest.mark.slow
def test_a_killed_ensemble_resumes_in_lockstep(tmp_path, monkeypatch):
    """A kill right after replica 0 saved its state at a checkpoint, before replica 1 did: on resume replica 0
    goes back to its previous state, and the ensemble ends as the uninterrupted one."""
    import importlib

    from equicalc.analysis import EnsembleQuenchResult, quench

    qmod = importlib.import_module("equicalc.analysis.quench")
    calc = _calc()
    reference = quench([cu_au_alloy(0), cu_au_alloy(1)], calc, replicas=2, directory=tmp_path / "reference", **QUENCH)
    saves = {"n": 0}
    original = qmod._save_state

    def dying(*args, **kwargs):
        original(*args, **kwargs)
        saves["n"] += 1
        if saves["n"] == 3:  # step 20: both saved; step 40: the first of the two
            raise _Kill

    with monkeypatch.context() as m:
        m.setattr(qmod, "_save_state", dying)
        with pytest.raises(_Kill):  # the replica's own error, not the others' "stopped"
            quench([cu_au_alloy(0), cu_au_alloy(1)], calc, replicas=2, directory=tmp_path / "killed", **QUENCH)
    assert not any(EnsembleQuenchResult.load(tmp_path / "killed").replicas[k].finished for k in range(2))
    assert EnsembleQuenchResult.load(tmp_path / "killed", finished=True).replicas == []
    done = quench([cu_au_alloy(0), cu_au_alloy(1)], calc, replicas=2, directory=tmp_path / "killed", **QUENCH)
    for a, b in zip(reference.replicas, done.replicas):
        np.testing.assert_array_equal(a.data["step"], b.data["step"])
        np.testing.assert_allclose(b.data["volume_per_atom"], a.data["volume_per_atom"], rtol=1e-12)


def test_quench_ensemble_input_errors(tmp_path):
    from equicalc.analysis import quench

    with pytest.raises(ValueError, match="replicas must be a positive integer"):
        quench(cu_au_alloy(0), EMT(), replicas=0, directory=tmp_path)
    with pytest.raises(ValueError, match="match the starting structures"):
        quench([cu_au_alloy(0), cu_au_alloy(1)], EMT(), replicas=3, directory=tmp_path)
    other = cu_au_alloy(2)
    other.numbers[other.numbers == 79] = 47
    with pytest.raises(ValueError, match="different sets of species"):
        quench([cu_au_alloy(0), other], EMT(), replicas=2, directory=tmp_path)
    cluster = cu_au_alloy(1)
    cluster.pbc = False
    with pytest.raises(ValueError, match="periodic"):
        quench([cu_au_alloy(0), cluster], EMT(), replicas=2, directory=tmp_path)

    class NoStress(EMT):
        implemented_properties = ["energy", "forces"]

    with pytest.raises(ValueError, match="NoStress gives no stress"):
        quench(cu_au_alloy(0), NoStress(), replicas=2, directory=tmp_path)
    assert not any(tmp_path.iterdir())  # refused before any MD started or any file was written
