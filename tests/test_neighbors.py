"""Every neighbour-list backend reproduces ase.neighborlist.neighbor_list exactly."""
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, fcc111, molecule
from ase.neighborlist import neighbor_list as ase_neighbor_list

from equicalc.graph import AtomicGraph
from equicalc.neighbors import SkinNeighborList, available_backends, edge_pair_index, neighbor_list

BACKENDS = available_backends()


def _random_cell(rng, n, scale=8.0):
    cell = np.eye(3) * scale + rng.normal(scale=0.25 * scale, size=(3, 3))
    atoms = Atoms(numbers=rng.integers(1, 4, n), cell=cell, pbc=True)
    atoms.set_scaled_positions(rng.uniform(-0.7, 1.7, (n, 3)))  # also outside the cell
    return atoms


def _structures():
    rng = np.random.default_rng(42)
    out = [_random_cell(rng, 30) for _ in range(3)]
    out += [_random_cell(rng, 4, scale=3.0), _random_cell(rng, 1, scale=2.5)]  # cells smaller than the cutoff
    out += [molecule("CH3CH2OH"), fcc111("Cu", (2, 2, 3), vacuum=6.0)]
    mixed = _random_cell(rng, 12)
    mixed.pbc = [True, False, True]
    wire = _random_cell(rng, 9)
    wire.pbc = [False, False, True]
    wire.cell[0] = 0.0
    wire.cell[1] = 0.0
    return out + [mixed, wire, bulk("Cu", "fcc", a=3.6) * (1, 1, 1)]


def _pair_sets(edge_index, shifts, structures):
    ei, sh = edge_index.cpu().numpy(), shifts.cpu().numpy()
    sets, start = [], 0
    for atoms in structures:
        m = (ei[0] >= start) & (ei[0] < start + len(atoms))
        sets.append(set(zip(ei[0][m] - start, ei[1][m] - start, map(tuple, sh[m]))))
        start += len(atoms)
    return sets


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cutoff", [3.0, 5.5])
def test_backend_equals_ase(backend, cutoff):
    structures = _structures()
    g = AtomicGraph.from_atoms_list(structures).build_neighbors(cutoff, backend=backend)
    for atoms, got in zip(structures, _pair_sets(g.edge_index, g.shifts, structures)):
        i, j, s = ase_neighbor_list("ijS", atoms, cutoff)
        ref = set(zip(i, j, map(tuple, s)))
        assert got == ref, f"{backend}: {atoms.get_chemical_formula()} pbc={atoms.pbc}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_edge_vectors_match_ase(backend):
    atoms = _structures()[0]
    g = AtomicGraph.from_atoms(atoms).build_neighbors(4.0, backend=backend)
    d = g.edge_vectors().norm(dim=1).numpy()
    ref = ase_neighbor_list("d", atoms, 4.0)
    np.testing.assert_allclose(np.sort(d), np.sort(ref), rtol=0, atol=1e-12)


def test_small_cell_sees_own_images():
    atoms = bulk("Cu", "fcc", a=3.6)  # one atom, cell much smaller than the cutoff
    g = AtomicGraph.from_atoms(atoms).build_neighbors(5.0, backend="torch")
    assert g.edge_index.shape[1] == len(ase_neighbor_list("i", atoms, 5.0))
    assert (g.edge_index[0] == g.edge_index[1]).all()
    assert not (g.shifts == 0).all(dim=1).any(), "an atom must never see itself at zero shift"


def test_bad_arguments():
    pos = torch.zeros((2, 3), dtype=torch.float64)
    cell = torch.zeros((1, 3, 3), dtype=torch.float64)
    pbc = torch.zeros((1, 3), dtype=torch.bool)
    with pytest.raises(ValueError, match="unknown neighbour-list backend"):
        neighbor_list(pos, cell, pbc, [2], 3.0, backend="nope")
    with pytest.raises(ValueError, match="cutoff"):
        neighbor_list(pos, cell, pbc, [2], -1.0)
    with pytest.raises(ValueError, match="n_atoms"):
        neighbor_list(pos, cell, pbc, [3], 3.0)


def _fresh(graph, cutoff):
    g = graph.build_neighbors(cutoff, backend="torch")
    return set(zip(*g.edge_index.numpy(), map(tuple, g.shifts.numpy())))


def test_skin_list_equals_fresh_build_under_moves_and_strain():
    rng = np.random.default_rng(3)
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
    skin_list = SkinNeighborList(4.0, skin=0.6, backend="torch")
    for step in range(60):
        atoms.positions += rng.normal(scale=0.02, size=atoms.positions.shape)
        strain = np.eye(3) + 0.002 * rng.normal(size=(3, 3))
        atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        graph = AtomicGraph.from_atoms(atoms)
        g = skin_list.update(graph)
        got = set(zip(*g.edge_index.numpy(), map(tuple, g.shifts.numpy())))
        assert got == _fresh(graph, 4.0), f"step {step}"
        # the pair ids it carries: numbered 0..P-1 and the same partition of the edges as a fresh numbering
        fresh = edge_pair_index(g.edge_index, g.shifts)
        assert torch.equal(torch.unique(g.edge_pair), torch.arange(int(fresh.max()) + 1))
        both = torch.unique(torch.stack([g.edge_pair, fresh], dim=1), dim=0)
        assert both.shape[0] == int(fresh.max()) + 1, f"step {step}"
    assert skin_list.builds < skin_list.calls, "the skin list was never reused"
    assert skin_list.builds > 1, "the skin list was never rebuilt"


def test_skin_list_rebuilds_on_wrap_and_species_change():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
    skin_list = SkinNeighborList(4.0, skin=0.5, backend="torch")
    skin_list.update(AtomicGraph.from_atoms(atoms))
    atoms.positions[0] += atoms.cell[0]  # a wrap by one lattice vector
    g = skin_list.update(AtomicGraph.from_atoms(atoms))
    assert skin_list.builds == 2
    assert set(zip(*g.edge_index.numpy(), map(tuple, g.shifts.numpy()))) == _fresh(AtomicGraph.from_atoms(atoms), 4.0)
    atoms.numbers[0] = 40
    skin_list.update(AtomicGraph.from_atoms(atoms))
    assert skin_list.builds == 3


def test_cell_inverse_and_volume_equal_lapack():
    from equicalc.graph import cell_inverse, cell_volume

    cells = torch.tensor(np.random.default_rng(4).normal(size=(5, 3, 3)) + 4 * np.eye(3))
    cells[1] = -cells[1]  # a left-handed cell: the volume is still positive
    torch.testing.assert_close(cell_volume(cells), torch.linalg.det(cells).abs(), rtol=1e-13, atol=0)
    for cell in cells:
        torch.testing.assert_close(cell_inverse(cell), torch.linalg.inv(cell), rtol=1e-12, atol=1e-14)
