"""EquiCalc: batched evaluation, skin reuse, input checks, and ASE MD on periodic cells, a slab and a molecule."""
import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.md.langevin import Langevin
from ase.md.nose_hoover_chain import IsotropicMTKNPT
from ase.md.velocitydistribution import thermalize_momenta
from ase.md.verlet import VelocityVerlet

from equicalc import EquiCalc, save_model
from equicalc.neighbors import available_backends
from conftest import cuzr_cluster, random_cuzr, small_model


def test_calculate_batch_equals_one_by_one(model64):
    structures = [random_cuzr(seed=s) for s in range(3)] + [random_cuzr(n_rep=1, seed=9), cuzr_cluster(seed=2)]
    slab = random_cuzr(seed=4)
    slab.pbc = [True, True, False]
    structures.append(slab)
    calc = EquiCalc(model64, max_edges_per_batch=3000)  # forces several passes
    batched = calc.calculate_batch(structures)
    single = EquiCalc(model64)
    for atoms, res in zip(structures, batched):
        atoms.calc = single
        assert res["energy"] == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
        np.testing.assert_allclose(res["forces"], atoms.get_forces(), atol=1e-10)
        np.testing.assert_allclose(res["energies"], atoms.get_potential_energies(), atol=1e-10)
        if atoms.pbc.all():
            np.testing.assert_allclose(res["stress"], atoms.get_stress(), atol=1e-12)
        else:
            assert "stress" not in res
    one_pass = EquiCalc(model64).calculate_batch(structures)
    for a, b in zip(one_pass, batched):
        assert a["energy"] == pytest.approx(b["energy"], abs=1e-10)


@pytest.mark.parametrize("backend", available_backends())
def test_backends_give_same_results(model64, backend):
    atoms = random_cuzr(seed=11)
    ref = EquiCalc(model64, neighbor_backend="torch").calculate_batch([atoms])[0]
    got = EquiCalc(model64, neighbor_backend=backend).calculate_batch([atoms])[0]
    assert got["energy"] == pytest.approx(ref["energy"], abs=1e-10)
    np.testing.assert_allclose(got["forces"], ref["forces"], atol=1e-10)


def test_stress_only_for_periodic(model64):
    cluster = cuzr_cluster()
    cluster.calc = EquiCalc(model64)
    cluster.get_forces()
    from ase.calculators.calculator import PropertyNotImplementedError

    with pytest.raises(PropertyNotImplementedError):
        cluster.get_stress()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Atoms(), "empty"),
        (lambda: Atoms("CuH", positions=[[0, 0, 0], [1.5, 0, 0]]), "species H not in the model"),
        (lambda: Atoms("Cu", positions=[[np.nan, 0, 0]]), "NaN"),
        (lambda: Atoms("Cu", positions=[[np.inf, 0, 0]]), "NaN or inf"),
        (lambda: Atoms("Cu", positions=[[0, 0, 0]], pbc=True), "cell vector 0 is zero"),
        (lambda: Atoms("Cu2", positions=[[0, 0, 0], [1, 1, 1]], cell=[[2, 0, 0], [4, 0, 0], [0, 0, 3]], pbc=True), "linearly dependent"),
    ],
)
def test_bad_input_is_a_clear_error(model64, make, message):
    atoms = make()
    atoms.calc = EquiCalc(model64)
    with pytest.raises(ValueError, match=message):
        atoms.get_potential_energy()
    with pytest.raises(ValueError, match=message):
        EquiCalc(model64).calculate_batch([random_cuzr(n_rep=1), atoms])


def test_bad_construction(tmp_path, model64):
    with pytest.raises(FileNotFoundError):
        EquiCalc(tmp_path / "missing.pth")
    with pytest.raises(TypeError):
        EquiCalc(42)
    with pytest.raises(ValueError, match="dtype"):
        EquiCalc(model64, dtype="float16")
    with pytest.raises(ValueError, match="skin"):
        EquiCalc(model64, skin=-1)


def test_caller_model_is_not_modified(model64):
    EquiCalc(model64, dtype="float32")
    assert next(model64.parameters()).dtype == torch.float64
    assert next(model64.parameters()).requires_grad


def _run_and_compare(atoms, dyn_factory, model, steps):
    """Run MD with a skin list; at every step compare with a fresh neighbour build."""
    skin_calc = EquiCalc(model, skin=0.8)
    fresh_calc = EquiCalc(model, skin=0.0)
    atoms.calc = skin_calc
    dyn = dyn_factory(atoms)
    worst = 0.0

    def check():
        nonlocal worst
        ref = fresh_calc.calculate_batch([atoms])[0]
        worst = max(worst, abs(atoms.get_potential_energy() - ref["energy"]))
        np.testing.assert_allclose(atoms.get_forces(), ref["forces"], atol=1e-9)
        if atoms.pbc.all():
            np.testing.assert_allclose(atoms.get_stress(), ref["stress"], atol=1e-11)

    dyn.attach(check, interval=1)
    dyn.run(steps)
    assert worst < 1e-9
    assert np.isfinite(atoms.positions).all()
    return skin_calc


def test_change_check_answers_as_ase_does(model64):
    from ase.calculators.calculator import Calculator

    atoms = random_cuzr(seed=3)
    atoms.calc = EquiCalc(model64)
    atoms.get_forces()
    calc, same = atoms.calc, atoms.copy()
    same.set_momenta(np.ones((len(same), 3)))  # not a change ASE looks at
    cases = {"same": same}
    for name, edit in {"positions": lambda a: a.positions.__setitem__((0, 0), a.positions[0, 0] + 1e-9),
                       "numbers": lambda a: a.numbers.__setitem__(0, 29 if a.numbers[0] == 40 else 40),
                       "cell": lambda a: a.set_cell(a.cell * 1.001, scale_atoms=False),
                       "pbc": lambda a: a.set_pbc([True, True, False]),
                       "initial_charges": lambda a: a.set_initial_charges(np.ones(len(a)))}.items():
        cases[name] = atoms.copy()
        edit(cases[name])
    for name, other in cases.items():
        assert calc.check_state(other) == Calculator.check_state(calc, other), name
    assert calc.check_state(same) == [] and calc.check_state(cases["positions"]) == ["positions"]


def test_langevin_periodic_skin_reuse_is_exact(model64):
    atoms = random_cuzr(seed=12, rattle=0.05)
    thermalize_momenta(atoms, temperature_K=1500, rng=np.random.default_rng(0))
    calc = _run_and_compare(
        atoms, lambda a: Langevin(a, 2 * units.fs, temperature_K=1500, friction=0.02, rng=np.random.default_rng(1)),
        model64, 40)
    assert calc.neighbors.builds < calc.neighbors.calls


def test_npt_skin_reuse_is_exact(model64):
    atoms = random_cuzr(seed=13, rattle=0.05)
    thermalize_momenta(atoms, temperature_K=800, rng=np.random.default_rng(0))
    _run_and_compare(
        atoms,
        lambda a: IsotropicMTKNPT(a, 1 * units.fs, temperature_K=800, pressure_au=0.0,
                                  tdamp=50 * units.fs, pdamp=200 * units.fs),
        model64, 40)


def test_langevin_slab(model64):
    slab = random_cuzr(seed=14, rattle=0.05)
    slab.pbc = [True, True, False]
    slab.center(vacuum=5.0, axis=2)
    thermalize_momenta(slab, temperature_K=600, rng=np.random.default_rng(0))
    _run_and_compare(slab, lambda a: Langevin(a, 2 * units.fs, temperature_K=600, friction=0.02,
                                              rng=np.random.default_rng(2)), model64, 30)


def test_molecule_md_with_saved_model(tmp_path):
    model = small_model(species=["H", "C", "O"], shifts={"H": -1.0, "C": -5.0, "O": -4.0}, scales=0.3, seed=3)
    save_model(model, tmp_path / "model.pth")
    from ase.build import molecule

    mol = molecule("CH3CH2OH")
    thermalize_momenta(mol, temperature_K=300, rng=np.random.default_rng(0))
    mol.calc = EquiCalc(tmp_path / "model.pth", dtype="float64")
    dyn = Langevin(mol, 0.25 * units.fs, temperature_K=300, friction=0.05, rng=np.random.default_rng(3))
    dyn.run(30)
    _run_and_compare(mol, lambda a: VelocityVerlet(a, 0.25 * units.fs), model, 10)


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["nequip", "allegro"])
def test_nve_energy_conservation(architecture):
    # a random network is a rough landscape that heats the atoms; a small energy
    # scale and 0.5 fs steps keep velocity Verlet in its accurate regime
    model = small_model(architecture=architecture, scales=0.005)
    atoms = random_cuzr(seed=15, rattle=0.02, a=3.5)
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    atoms.calc = EquiCalc(model)
    dyn = VelocityVerlet(atoms, 0.5 * units.fs)
    totals = []
    dyn.attach(lambda: totals.append(atoms.get_total_energy()), interval=1)
    dyn.run(400)
    totals = np.array(totals) / len(atoms)
    kinetic = atoms.get_kinetic_energy() / len(atoms)
    assert kinetic > 0.005  # the atoms actually move
    drift = np.abs(totals - totals[0]).max()
    assert drift < 2e-5, f"total energy wandered by {drift:.2e} eV/atom"


def test_float32_md_runs(model32):
    atoms = random_cuzr(seed=16, rattle=0.05)
    thermalize_momenta(atoms, temperature_K=1000, rng=np.random.default_rng(0))
    atoms.calc = EquiCalc(model32)
    Langevin(atoms, 2 * units.fs, temperature_K=1000, friction=0.02, rng=np.random.default_rng(4)).run(20)
    assert atoms.get_forces().dtype == np.float64
    # after the float32 run, the same weights in float64 give the same forces and stress to float32 rounding
    exact = EquiCalc(model32, dtype="float64").calculate_batch([atoms])[0]
    np.testing.assert_allclose(atoms.get_forces(), exact["forces"], atol=2e-5 * np.abs(exact["forces"]).max())
    np.testing.assert_allclose(atoms.get_stress(), exact["stress"], atol=2e-5 * np.abs(exact["stress"]).max())


def test_fused_kernels_equal_the_pytorch_path():
    model = small_model(l_max=2, seed=11)
    atoms = random_cuzr(seed=11)
    fused = EquiCalc(model, fused_kernels=True)
    plain = EquiCalc(model, fused_kernels=False)
    assert fused.fused_kernels and not plain.fused_kernels
    a, b = fused.calculate_batch([atoms])[0], plain.calculate_batch([atoms])[0]
    assert abs(a["energy"] - b["energy"]) < 1e-10
    np.testing.assert_allclose(a["forces"], b["forces"], atol=1e-11)
    np.testing.assert_allclose(a["stress"], b["stress"], atol=1e-12)


@pytest.mark.slow
def test_two_processes_give_the_same_bits(tmp_path):
    """Forces, stress and a training step's gradients agree to the last bit between two processes, the first
    running every CPU kernel for the first time: with numba's on-disk cache (``cache=True``) the second would load
    kernels that numba optimised otherwise, and the first run after an install and every later one differed."""
    import os
    import subprocess
    import sys

    script = """
import hashlib
from conftest import random_cuzr, small_model
from equicalc import EquiCalc
from equicalc.graph import AtomicGraph
from equicalc.nn.forces import compute_properties
digest = hashlib.md5()
calc = EquiCalc(small_model(seed=3), fused_kernels=True)  # fused convolutions and the radial table
for seed in range(2):
    r = calc.calculate_batch([random_cuzr(seed=seed)])[0]
    digest.update(r["forces"].tobytes() + r["stress"].tobytes())
model = small_model(seed=3)  # a training step's loss gradient
graph = AtomicGraph.from_atoms(random_cuzr(seed=5)).build_neighbors(4.0)
out = compute_properties(model, graph, forces=True, stress=True, training=True)
(out["forces"].square().sum() + out["stress"].square().sum()).backward()
for p in model.parameters():
    if p.grad is not None:
        digest.update(p.grad.numpy().tobytes())
print(digest.hexdigest())
"""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", script], env=env, cwd=os.path.dirname(__file__), capture_output=True,
                           text=True, check=True).stdout.split()[-1] for _ in range(2)]
    assert runs[0] == runs[1]


def test_cpu_kernels_use_as_many_threads_as_torch():
    """With ``OMP_NUM_THREADS=1`` torch and the numba kernels both run on one thread, before and after the first
    kernel has started numba's pool (which shares torch's OpenMP runtime and would set it to every core); a later
    ``torch.set_num_threads`` carries over to the kernels."""
    import os
    import subprocess
    import sys

    script = """
import numba, torch
from equicalc import EquiCalc
from conftest import random_cuzr, small_model
calc = EquiCalc(small_model(seed=3), fused_kernels=True)
seen = []
for threads in (None, 2, 1):
    if threads:
        torch.set_num_threads(threads)
    calc.calculate_batch([random_cuzr(seed=3)])
    seen.append((torch.get_num_threads(), numba.get_num_threads()))
print(seen)
"""
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=os.path.dirname(__file__), capture_output=True,
                         text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[(1, 1), (2, 2), (1, 1)]"
