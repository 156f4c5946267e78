"""Structure builders: random alloy cells of any composition, the Cu–Zr crystals, slabs.

    atoms = random_alloy(250, "Cu64Zr36", volume_per_atom=17.5, seed=0)   # a start to melt
    b2 = relaxed_b2(calc)                                                   # B2 CuZr at calc's lattice constant
    c15 = c15_cu2zr().repeat(2)

Lengths in Å, volumes in Å³/atom. Random choices come from ``seed`` (an integer
or a ``numpy.random.Generator``), so the same seed gives the same structure.
"""
from __future__ import annotations

from typing import Dict, Union

import numpy as np
from ase import Atoms

__all__ = ["composition_fractions", "random_alloy", "b2_cuzr", "fcc_cu", "hcp_zr", "c11b_cuzr2", "c15_cu2zr",
           "substitute", "slab", "relaxed_lattice", "relaxed_b2"]

Seed = Union[int, np.random.Generator, None]


def _rng(seed: Seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def composition_fractions(composition: Union[str, Dict[str, float]]) -> Dict[str, float]:
    """``{symbol: fraction}`` (summing to 1) from a formula such as ``"Cu64Zr36"`` or a dict of amounts."""
    from ase.data import atomic_numbers
    from ase.formula import Formula

    if isinstance(composition, str):
        try:
            amounts = Formula(composition).count()
        except ValueError as exc:
            raise ValueError(f"composition {composition!r} is not a chemical formula ({exc})") from None
    else:
        amounts = dict(composition)
    if not amounts:
        raise ValueError("composition is empty")
    for symbol, amount in amounts.items():
        if symbol not in atomic_numbers or symbol == "X":
            raise ValueError(f"composition: {symbol!r} is not a chemical symbol")
        if not (amount >= 0 and np.isfinite(amount)):
            raise ValueError(f"composition: the amount of {symbol} must be >= 0, got {amount}")
    total = float(sum(amounts.values()))
    if total <= 0:
        raise ValueError(f"composition {composition!r} has no atoms")
    return {s: float(a) / total for s, a in amounts.items()}


def random_alloy(n_atoms: int, composition: Union[str, Dict[str, float]] = "Cu64Zr36", volume_per_atom: float = 16.3,
                 seed: Seed = 0) -> Atoms:
    """``n_atoms`` atoms of ``composition`` on random sites of a cubic grid in a cubic periodic cell (a start to melt).

    Each species but the last gets ``round(n_atoms * fraction)`` atoms, the last the rest; species are
    shuffled over the sites. Grid sites are about ``volume_per_atom ** (1/3)`` Å apart or more, so the
    start has no overlapping atoms, but it is far from equilibrium: relax or melt it first.
    """
    if not isinstance(n_atoms, (int, np.integer)) or n_atoms < 1:
        raise ValueError(f"random_alloy: need at least one atom, got {n_atoms}")
    if not volume_per_atom > 0:
        raise ValueError(f"random_alloy: volume_per_atom must be positive, got {volume_per_atom} Å^3")
    fractions = composition_fractions(composition)
    rng = _rng(seed)
    m = int(np.ceil(n_atoms ** (1 / 3)))
    length = (n_atoms * volume_per_atom) ** (1 / 3)
    grid = np.stack(np.meshgrid(*[np.arange(m)] * 3, indexing="ij"), -1).reshape(-1, 3)
    sites = grid[rng.choice(len(grid), n_atoms, replace=False)] * (length / m)
    symbols = []
    for symbol, fraction in list(fractions.items())[:-1]:
        symbols += [symbol] * int(round(n_atoms * fraction))
    if len(symbols) > n_atoms:
        raise ValueError(f"random_alloy: {n_atoms} atoms are too few for composition {composition!r}")
    symbols += [list(fractions)[-1]] * (n_atoms - len(symbols))
    rng.shuffle(symbols)
    return Atoms(symbols, positions=sites, cell=[length] * 3, pbc=True)


def b2_cuzr(a: float = 3.24) -> Atoms:
    """B2 (CsCl) CuZr, cubic cell of 2 atoms, lattice constant ``a`` (Å; about 3.24 with the Mendelev EAM)."""
    from ase.spacegroup import crystal

    return crystal(["Cu", "Zr"], [(0, 0, 0), (0.5, 0.5, 0.5)], spacegroup=221, cellpar=[a, a, a, 90, 90, 90])


def fcc_cu(a: float = 3.64) -> Atoms:
    """fcc Cu, conventional cubic cell of 4 atoms."""
    from ase.build import bulk

    return bulk("Cu", "fcc", a=a, cubic=True)


def hcp_zr(a: float = 3.23, c: float = 5.17) -> Atoms:
    """hcp Zr, orthorhombic cell of 4 atoms."""
    from ase.build import bulk

    return bulk("Zr", "hcp", a=a, c=c, orthorhombic=True)


def c11b_cuzr2(a: float = 3.22, c: float = 11.18, z: float = 0.345) -> Atoms:
    """C11b CuZr2 (MoSi2 type, I4/mmm), conventional cell of 6 atoms."""
    from ase.spacegroup import crystal

    return crystal(["Cu", "Zr"], [(0, 0, 0), (0, 0, z)], spacegroup=139, cellpar=[a, a, c, 90, 90, 90])


def c15_cu2zr(a: float = 7.05) -> Atoms:
    """C15 Cu2Zr (Laves MgCu2 type, Fd-3m), conventional cell of 24 atoms."""
    from ase.spacegroup import crystal

    return crystal(["Zr", "Cu"], [(0.125, 0.125, 0.125), (0.5, 0.5, 0.5)], spacegroup=227, setting=2,
                   cellpar=[a, a, a, 90, 90, 90])


def substitute(atoms: Atoms, count: int, seed: Seed = 0, species: str = None) -> Atoms:
    """A copy of ``atoms`` with ``count`` random sites changed: to ``species``, or (None) Cu <-> Zr swapped."""
    rng = _rng(seed)
    out = atoms.copy()
    symbols = np.array(out.get_chemical_symbols())
    sites = rng.choice(len(out), count, replace=False)
    symbols[sites] = species if species is not None else np.where(symbols[sites] == "Cu", "Zr", "Cu")
    out.set_chemical_symbols(symbols.tolist())
    return out


def slab(atoms: Atoms, vacuum: float = 12.0) -> Atoms:
    """``atoms`` (wrapped) with ``vacuum`` Å of empty space added along the third cell vector (still periodic)."""
    out = atoms.copy()
    out.wrap()
    cell = out.cell.array.copy()
    cell[2] = cell[2] + cell[2] / np.linalg.norm(cell[2]) * vacuum
    out.set_cell(cell, scale_atoms=False)
    return out


def relaxed_lattice(build, calc, a0: float, rel_range: float = 0.1) -> float:
    """The lattice constant (Å) within ``a0 (1 ± rel_range)`` that minimises ``calc``'s energy of ``build(a)``."""
    from scipy.optimize import minimize_scalar

    def energy(a):
        atoms = build(a)
        atoms.calc = calc
        return atoms.get_potential_energy()

    lo, hi = a0 * (1 - rel_range), a0 * (1 + rel_range)
    return float(minimize_scalar(energy, bounds=(lo, hi), method="bounded", options={"xatol": 1e-5}).x)


def relaxed_b2(calc, a0: float = 3.24) -> Atoms:
    """B2 CuZr (2 atoms) at the cubic lattice constant that minimises ``calc``'s energy."""
    return b2_cuzr(relaxed_lattice(b2_cuzr, calc, a0))
