"""Voronoi indices: the known polyhedra of crystals and the icosahedron, any cell, both backends."""
import importlib.util

import numpy as np
import pytest
from ase.build import bulk
from ase.cluster import Icosahedron

from equicalc.analysis import voronoi
from equicalc.analysis.voronoi import voronoi_indices
from conftest import CUZR, random_cuzr

NO_OVITO = importlib.util.find_spec("ovito") is None
BACKENDS = ["pyscal3", pytest.param("ovito", marks=pytest.mark.skipif(
    NO_OVITO, reason="OVITO is not installed (pip install \"equicalc[ovito]\")"))]


def single(indices) -> set:
    return set(map(tuple, np.asarray(indices).tolist()))


@pytest.mark.parametrize("backend", BACKENDS)
def test_crystals_and_the_icosahedron(backend):
    fcc = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3)
    bcc = bulk("Fe", "bcc", a=2.87, cubic=True).repeat(3)
    assert single(voronoi_indices(fcc, backend=backend)) == {(0, 12, 0, 0)}
    assert single(voronoi_indices(bcc, backend=backend)) == {(0, 6, 0, 8)}
    # the primitive fcc cell: a triclinic box (60° between its vectors), the same polyhedra
    assert single(voronoi_indices(bulk("Cu", "fcc", a=3.61).repeat(4), backend=backend)) == {(0, 12, 0, 0)}
    # the same bcc crystal in a tilted cell (a2 -> a1 + a2), with positions far outside it
    tilted = bcc.copy()
    tilted.set_cell(bcc.cell.array @ np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]]), scale_atoms=False)
    tilted.positions += 25.0
    assert single(voronoi_indices(tilted, backend=backend)) == {(0, 6, 0, 8)}
    # the 13-atom Mackay icosahedron in a box with vacuum: its centre is ⟨0,0,12,0⟩
    ico = Icosahedron("Cu", 2)
    ico.center(vacuum=6.0)
    ico.pbc = True
    centre = np.argmin(np.linalg.norm(ico.positions - ico.positions.mean(0), axis=1))
    assert tuple(voronoi_indices(ico, backend=backend)[centre]) == (0, 0, 12, 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_thresholds_remove_the_edges_and_faces_of_thermal_noise(backend):
    fcc = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3)
    fcc.positions += np.random.default_rng(0).normal(0.0, 0.01, fcc.positions.shape)
    assert single(voronoi_indices(fcc, backend=backend)) == {(0, 12, 0, 0)}
    # without the thresholds, the six four-edge vertices of each cell split into short edges and slivers
    raw = voronoi_indices(fcc, area_threshold=0.0, edge_threshold=0.0, backend=backend)
    assert (0, 12, 0, 0) not in single(raw) and raw.sum(axis=1).mean() > 12


def test_indices_follow_the_atoms_under_rotation_and_permutation():
    atoms = random_cuzr(n_rep=3)
    ref = voronoi_indices(atoms)
    order = np.random.default_rng(1).permutation(len(atoms))
    moved = atoms[order]
    moved.rotate(37.0, (1, 2, 3), rotate_cell=True)
    np.testing.assert_array_equal(voronoi_indices(moved), ref[order])


def test_a_small_cell_is_tessellated_without_images_and_gives_its_supercells_indices(monkeypatch):
    """A cell of under 200 atoms (108, as ``equicalc quench`` runs) but at least ``MIN_WIDTH`` wide goes to
    voro++ without pyscal3's 2×2×2 images; every atom gets the index of its copies in the 2×2×2 supercell,
    which pyscal3 tessellates its usual way."""
    import pyscal3

    from equicalc.analysis.voronoi import MIN_WIDTH, perpendicular_widths

    atoms = random_cuzr(n_rep=3, a=3.8, rattle=0.3, seed=2)  # triclinic, disordered
    assert len(atoms) < 200 and perpendicular_widths(atoms.cell).min() >= MIN_WIDTH
    supercell = voronoi_indices(atoms.repeat(2)).reshape(8, len(atoms), 4)
    with monkeypatch.context() as patch:
        patch.setattr(pyscal3, "find_neighbors", lambda *a, **k: pytest.fail("the small cell was padded"))
        small = voronoi_indices(atoms)
    assert len(single(small)) > 5  # a disordered cell: many kinds of polyhedra
    np.testing.assert_array_equal(supercell, np.broadcast_to(small, supercell.shape))


@pytest.mark.slow
@pytest.mark.skipif(NO_OVITO, reason="OVITO is not installed")
def test_pyscal3_and_ovito_agree_atom_by_atom_on_a_glass():
    from ase.io import read

    frames = read(CUZR / "test.extxyz.gz", ":")
    glass = next(f for f in frames if f.info["config_type"] == "glass" and len(f) >= 200).repeat(2)
    for area, edge in ((0.0, 0.0), (0.01, 0.1), (0.03, 0.25)):
        np.testing.assert_array_equal(voronoi_indices(glass, area, edge),
                                      voronoi_indices(glass, area, edge, backend="ovito"))
    radical = voronoi_indices(glass, backend="ovito", radii={"Cu": 1.28, "Zr": 1.60})
    assert not np.array_equal(radical, voronoi_indices(glass, backend="ovito"))


def test_result_statistics_and_plot(tmp_path):
    crystal = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3)
    crystal.symbols[:27] = "Zr"
    crystal.info["temperature"] = 300.0
    ico = Icosahedron("Cu", 2)
    ico.center(vacuum=6.0)
    ico.pbc = True
    ico.info["temperature"] = 1000.0
    v = voronoi([crystal, ico])
    np.testing.assert_array_equal(v.temperatures, [300.0, 1000.0])
    assert v.most_frequent("Zr") == [((0, 12, 0, 0), 1.0)]
    assert v.most_frequent("Cu", frames=[0]) == [((0, 12, 0, 0), 1.0)]
    np.testing.assert_allclose(v.icosahedral_fraction("Cu"), [0.0, 1 / 13])
    assert v.most_frequent("Zr", frames=[1]) == []  # no Zr in the icosahedron
    assert v.icosahedral_fraction("Zr")[0] == 0.0 and np.isnan(v.icosahedral_fraction("Zr")[1])
    fig = v.plot(path=tmp_path / "voronoi.png")
    assert (tmp_path / "voronoi.png").stat().st_size > 0 and len(fig.axes) == 2
    with pytest.raises(ValueError, match="no 'Ni' atoms"):
        v.icosahedral_fraction("Ni")
    with pytest.raises(ValueError, match="temperatures"):
        voronoi([crystal, ico], temperatures=[300.0])


def test_bad_input_is_refused():
    alloy = random_cuzr()
    cluster = alloy.copy()
    cluster.pbc = False
    with pytest.raises(ValueError, match="periodic"):
        voronoi_indices(cluster)
    with pytest.raises(ValueError, match="backend"):
        voronoi_indices(alloy, backend="voro")
    with pytest.raises(ValueError, match="radii"):
        voronoi_indices(alloy, radii={"Cu": 1.28, "Zr": 1.6})
    with pytest.raises(ValueError, match="area_threshold"):
        voronoi_indices(alloy, area_threshold=-0.1)
    with pytest.raises(ValueError, match="edge_threshold"):
        voronoi_indices(alloy, edge_threshold=float("nan"))
