"""Physics of the models (NequIP and Allegro) through EquiCalc, in float64: derivatives, symmetry, cutoff, locality."""
import numpy as np
import pytest
from ase import Atoms

from equicalc import EquiCalc
from conftest import ARCHITECTURES, cuzr_cluster, random_cuzr, small_model


def _energy(calc, atoms):
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms.get_potential_energy()


def _random_rotation(rng, reflect=False):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    if reflect:
        q = q @ np.diag([1.0, 1.0, -1.0])
    return q


@pytest.mark.parametrize("kind", ["periodic", "cluster", "slab"])
def test_forces_are_minus_energy_gradient(model64, kind):
    atoms = random_cuzr(seed=1) if kind == "periodic" else cuzr_cluster(seed=1)
    if kind == "slab":
        atoms = random_cuzr(seed=2)
        atoms.pbc = [True, True, False]
    calc = EquiCalc(model64, skin=0.0)
    atoms.calc = calc
    forces = atoms.get_forces()
    h = 1e-5
    numeric = np.zeros_like(forces)
    for a in range(len(atoms)):
        for k in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[a, k] += h
            minus.positions[a, k] -= h
            numeric[a, k] = -(_energy(calc, plus) - _energy(calc, minus)) / (2 * h)
    rel = np.abs(forces - numeric).max() / np.abs(forces).max()
    assert rel < 1e-6, rel


def test_stress_is_strain_derivative(model64):
    atoms = random_cuzr(seed=3)
    calc = EquiCalc(model64, skin=0.0)
    atoms.calc = calc
    stress = atoms.get_stress(voigt=False)
    h = 1e-5
    numeric = np.zeros((3, 3))
    volume = atoms.get_volume()
    for i in range(3):
        for j in range(3):
            eps = np.zeros((3, 3))
            eps[i, j] = eps[j, i] = h / 2 if i != j else h
            e = []
            for sign in (1, -1):
                strained = atoms.copy()
                strained.set_cell(atoms.cell.array @ (np.eye(3) + sign * eps), scale_atoms=True)
                e.append(_energy(calc, strained))
            numeric[i, j] = (e[0] - e[1]) / (2 * h) / volume
    np.testing.assert_allclose(stress, numeric, atol=1e-9 * max(1.0, np.abs(stress).max()), rtol=1e-6)
    assert np.allclose(stress, stress.T)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("parity, l_max", [(True, 1), (True, 2), (False, 1), (False, 3)])
def test_rotation_translation_permutation(parity, l_max, architecture):
    model = small_model(parity=parity, l_max=l_max, seed=4, architecture=architecture)
    rng = np.random.default_rng(5)
    atoms = random_cuzr(seed=5)
    calc = EquiCalc(model, skin=0.0)
    atoms.calc = calc
    e0, f0, s0 = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress(voigt=False)
    rot = _random_rotation(rng)
    moved = atoms.copy()
    moved.set_cell(atoms.cell.array @ rot.T)
    moved.positions = atoms.positions @ rot.T + rng.normal(size=3) * 3.0
    perm = rng.permutation(len(atoms))
    moved = moved[perm]
    moved.calc = calc
    assert abs(moved.get_potential_energy() - e0) < 1e-10 * len(atoms)
    np.testing.assert_allclose(moved.get_forces(), (f0 @ rot.T)[perm], atol=1e-10)
    np.testing.assert_allclose(moved.get_stress(voigt=False), rot @ s0 @ rot.T, atol=1e-11)
    np.testing.assert_allclose(moved.get_potential_energies(), atoms.get_potential_energies()[perm], atol=1e-10)


def test_reflection_with_parity(model64):
    rng = np.random.default_rng(6)
    atoms = cuzr_cluster(n=10, seed=6)
    calc = EquiCalc(model64)
    atoms.calc = calc
    e0, f0 = atoms.get_potential_energy(), atoms.get_forces()
    refl = _random_rotation(rng, reflect=True)
    mirrored = atoms.copy()
    mirrored.positions = atoms.positions @ refl.T
    mirrored.calc = calc
    assert abs(mirrored.get_potential_energy() - e0) < 1e-10
    np.testing.assert_allclose(mirrored.get_forces(), f0 @ refl.T, atol=1e-10)


def test_supercell_is_extensive(model64):
    atoms = random_cuzr(n_rep=1, seed=7)
    calc = EquiCalc(model64)
    e1 = _energy(calc, atoms)
    big = atoms * (2, 2, 2)
    big.calc = calc
    assert abs(big.get_potential_energy() - 8 * e1) < 1e-9 * abs(8 * e1)
    atoms.calc = calc
    np.testing.assert_allclose(big.get_stress(), atoms.get_stress(), atol=1e-11)
    np.testing.assert_allclose(big.get_forces()[: len(atoms)], atoms.get_forces(), atol=1e-10)


def test_cell_smaller_than_cutoff(model64):
    """A one-atom-ish cell sees images of itself: same physics as its supercell."""
    small = Atoms("CuZr", positions=[[0, 0, 0], [1.4, 1.5, 1.6]], cell=[[2.9, 0, 0], [0.3, 3.0, 0], [0.2, 0.4, 3.1]], pbc=True)
    calc = EquiCalc(model64)
    e_small = _energy(calc, small)
    big = small * (2, 3, 2)
    assert abs(_energy(calc, big) - 12 * e_small) < 1e-9 * abs(e_small) * 12


def test_energy_smooth_across_cutoff(model64):
    r_max = model64.r_max
    calc = EquiCalc(model64, skin=0.0)
    values = {}
    for d in (r_max - 1e-4, r_max + 1e-4, r_max - 1e-2):
        dimer = Atoms("CuZr", positions=[[0, 0, 0], [d, 0, 0]])
        dimer.calc = calc
        values[d] = (dimer.get_potential_energy(), dimer.get_forces()[0, 0])
    e_in, f_in = values[r_max - 1e-4]
    e_out, f_out = values[r_max + 1e-4]
    assert e_out == pytest.approx(-3.5 - 6.2, abs=1e-12)  # beyond r_max: isolated atoms
    assert abs(e_in - e_out) < 1e-12
    assert abs(f_in - f_out) < 1e-9
    assert abs(values[r_max - 1e-2][0] - e_out) > 0  # the pair does interact inside r_max


def test_isolated_atom_is_its_shift(model64):
    for symbol, shift in (("Cu", -3.5), ("Zr", -6.2)):
        atom = Atoms(symbol, positions=[[1.0, 2.0, 3.0]])
        atom.calc = EquiCalc(model64)
        assert atom.get_potential_energy() == pytest.approx(shift, abs=1e-12)
        assert np.abs(atom.get_forces()).max() == 0.0


def test_float32_close_to_float64(model64):
    atoms = random_cuzr(seed=8)
    e64 = _energy(EquiCalc(model64), atoms)
    atoms32 = atoms.copy()
    atoms32.calc = EquiCalc(model64, dtype="float32")
    e32 = atoms32.get_potential_energy()
    assert abs(e32 - e64) < 1e-4 * len(atoms)
    assert atoms32.get_forces().dtype == np.float64


@pytest.mark.parametrize("architecture, local", [("allegro", True), ("nequip", False)])
def test_strict_locality(architecture, local):
    """Moving atoms beyond r_max of atom 0 leaves its energy unchanged only for a strictly local model."""
    model = small_model(architecture=architecture, num_layers=2, seed=9)
    r_max = model.r_max
    rng = np.random.default_rng(9)
    # atom 0 at the origin, a neighbour at 2.5 Å, and a far atom within r_max of the neighbour only
    positions = [[0.0, 0.0, 0.0], [2.5, 0.0, 0.0], [0.0, 2.6, 0.3], [2.5 + 3.0, 0.4, 0.0], [2.5 + 2.8, -1.5, 1.0]]
    atoms = Atoms("CuZrCuZrCu", positions=positions)
    calc = EquiCalc(model, skin=0.0)
    atoms.calc = calc
    e0 = atoms.get_potential_energies()[0]
    far = [k for k in range(len(atoms)) if np.linalg.norm(atoms.positions[k]) > r_max]
    assert far == [3, 4]
    moved = atoms.copy()
    moved.positions[far] += rng.normal(scale=0.3, size=(2, 3))
    assert all(np.linalg.norm(moved.positions[k]) > r_max for k in far)
    moved.calc = calc
    change = abs(moved.get_potential_energies()[0] - e0)
    if local:
        assert change < 1e-12
    else:
        assert change > 1e-6  # message passing carries the far atoms' positions to atom 0
