"""Cubic elastic constants: the stress derivatives agree with the curvature of the energy."""
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.units import GPa

from equicalc.analysis.elastic import cubic_elastic_constants


def _energy(atoms, strain):
    strained = atoms.copy()
    strained.set_cell(atoms.cell.array @ (np.eye(3) + strain), scale_atoms=True)
    strained.calc = EMT()
    return strained.get_potential_energy()


def test_stress_derivatives_match_the_energy_curvature():
    atoms = bulk("Cu", "fcc", a=3.5898, cubic=True)  # EMT's zero-stress lattice constant
    c = cubic_elastic_constants(atoms, EMT())
    volume, h = atoms.get_volume(), 0.003
    uni, shear = np.zeros((3, 3)), np.zeros((3, 3))
    uni[0, 0] = h
    shear[1, 2] = shear[2, 1] = h / 2
    for key, strain in (("C11", uni), ("C44", shear)):
        curvature = (_energy(atoms, strain) - 2 * _energy(atoms, 0 * strain) + _energy(atoms, -strain)) / h**2
        assert c[key] == pytest.approx(curvature / volume / GPa, rel=2e-3), key
    # a stable cubic crystal: C11 > |C12|, C44 > 0, C11 + 2 C12 > 0, and the bulk modulus from the volume curve
    assert c["C11"] > abs(c["C12"]) and c["C44"] > 0 and c["B"] == pytest.approx((c["C11"] + 2 * c["C12"]) / 3)
    iso = np.eye(3) * h
    curvature = (_energy(atoms, iso) - 2 * _energy(atoms, 0 * iso) + _energy(atoms, -iso)) / h**2
    assert c["B"] == pytest.approx(curvature / (9 * volume) / GPa, rel=5e-3)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="cubic cell"):
        cubic_elastic_constants(bulk("Cu", "fcc", a=3.59), EMT())  # the primitive cell
    with pytest.raises(ValueError, match="strain"):
        cubic_elastic_constants(bulk("Cu", "fcc", a=3.59, cubic=True), EMT(), strain=0.2)
