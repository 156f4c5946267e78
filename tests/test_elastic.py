"""Cubic elastic constants: the stress derivatives agree with the curvature of the energy."""
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.units import GPa

from equicalc.analysis.elastic import cubic_elastic_constants


def _energy(atoms, strain, calc=None):
    strained = atoms.copy()
    strained.set_cell(atoms.cell.array @ (np.eye(3) + strain), scale_atoms=True)
    strained.calc = calc or EMT()
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


def test_the_reference_eam_has_b2_cuzr_unstable_under_uniaxial_strain():
    """The Mendelev EAM's B2 CuZr at its zero-stress lattice constant has C11 < 0, whatever the
    strain amplitude, and the energy's curvature says the same: the shipped model's 10 % target on C11 is a
    tolerance of about 2.5 GPa on a small difference of large terms."""
    from equicalc.reference import eam_calculator

    eam = eam_calculator("matscipy")
    atoms = bulk("CuZr", "cesiumchloride", a=3.236928)  # the EAM's B2 lattice constant (compare.py --only b2)
    c11 = [cubic_elastic_constants(atoms, eam, strain)["C11"] for strain in (0.001, 0.0025, 0.005)]
    assert np.ptp(c11) < 2.0 and -28 < min(c11) and max(c11) < -23, c11
    h, uni = 0.002, np.diag([0.002, 0.0, 0.0])
    curvature = (_energy(atoms, uni, eam) - 2 * _energy(atoms, 0 * uni, eam) + _energy(atoms, -uni, eam)) / h**2
    assert curvature / atoms.get_volume() / GPa == pytest.approx(c11[0], abs=1.0)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="cubic cell"):
        cubic_elastic_constants(bulk("Cu", "fcc", a=3.59), EMT())  # the primitive cell
    with pytest.raises(ValueError, match="strain"):
        cubic_elastic_constants(bulk("Cu", "fcc", a=3.59, cubic=True), EMT(), strain=0.2)
