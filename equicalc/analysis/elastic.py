"""Elastic constants of a cubic crystal from the stress of strained cells.

    c = cubic_elastic_constants(atoms, calc)    # {"C11": ..., "C12": ..., "C44": ..., "B": ...} in GPa

The cell is strained by ±``strain`` (uniaxial along x, then shear in yz) and the
stress (ASE's sign: positive in tension) is differentiated by central
differences: C11 = dσxx/dεxx, C12 = dσyy/dεxx, C44 = dσyz/dγyz (γ the engineering
shear strain). The atoms keep their fractional positions, which is exact for
crystals whose every atom is a centre of inversion (fcc, bcc, B2, L1₂); others
would need the internal relaxation that this leaves out.
"""
from __future__ import annotations

import numpy as np


def _stress(atoms, calc, strain: np.ndarray) -> np.ndarray:
    """The 3x3 stress (eV/Å³) of ``atoms`` under the symmetric ``strain`` (3x3), atoms following the cell."""
    strained = atoms.copy()
    strained.set_cell(atoms.cell.array @ (np.eye(3) + strain), scale_atoms=True)
    strained.calc = calc
    return strained.get_stress(voigt=False)


def cubic_elastic_constants(atoms, calc, strain: float = 0.005) -> dict:
    """C11, C12, C44 and the bulk modulus B = (C11 + 2 C12)/3 (GPa) of a cubic crystal in a cubic cell
    (a relaxed one: at its zero-stress lattice constant), by central differences of the stress."""
    from ase.units import GPa

    if not 0 < strain < 0.05:
        raise ValueError(f"cubic_elastic_constants: strain must be in (0, 0.05), got {strain!r}")
    lengths, angles = atoms.cell.cellpar()[:3], atoms.cell.cellpar()[3:]
    if not (np.allclose(lengths, lengths[0], rtol=1e-6) and np.allclose(angles, 90.0, atol=1e-6)):
        raise ValueError("cubic_elastic_constants: needs a cubic cell (three equal, orthogonal vectors)")
    uniaxial, shear = np.zeros((3, 3)), np.zeros((3, 3))
    uniaxial[0, 0] = strain
    shear[1, 2] = shear[2, 1] = strain / 2  # engineering shear strain γyz = strain
    d_uni = (_stress(atoms, calc, uniaxial) - _stress(atoms, calc, -uniaxial)) / (2 * strain)
    d_shear = (_stress(atoms, calc, shear) - _stress(atoms, calc, -shear)) / (2 * strain)
    c11, c12, c44 = d_uni[0, 0] / GPa, 0.5 * (d_uni[1, 1] + d_uni[2, 2]) / GPa, d_shear[1, 2] / GPa
    return {"C11": float(c11), "C12": float(c12), "C44": float(c44), "B": float((c11 + 2 * c12) / 3)}
