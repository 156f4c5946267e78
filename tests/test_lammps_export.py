"""What pair_style equicalc evaluates, in Python: the local atoms' energies and forces stay exact when the ghost
shell's unneeded edges are skipped (layer_edge_sets, the selection the pair style makes in C++)."""
import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.neighborlist import neighbor_list

from conftest import ARCHITECTURES, small_model
from equicalc.lammps.export import (CACHED_PACKAGES, LammpsForces, _keep, _package_key, ghost_cutoff, layer_edge_sets,
                                    message_hops)


def _subdomain_with_ghosts(r_max, hops, seed=0):
    """A rattled Cu–Zr block whose central cube is 'local' and the rest a ghost shell hops × r_max thick."""
    rng = np.random.default_rng(seed)
    repeats = 2 * int(np.ceil(hops * r_max / 3.6)) + 2
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (repeats, repeats, repeats)
    atoms.numbers[rng.random(len(atoms)) < 0.36] = 40
    atoms.positions += rng.normal(scale=0.1, size=atoms.positions.shape)
    atoms.pbc = False
    i, j = neighbor_list("ij", atoms, r_max)
    centre = atoms.positions.mean(axis=0)
    local = torch.as_tensor(np.abs(atoms.positions - centre).max(axis=1) < 3.0, dtype=torch.float64)
    return (torch.as_tensor(atoms.numbers), torch.as_tensor(atoms.positions), torch.as_tensor(np.stack([i, j])),
            local)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_skipping_the_ghost_shells_edges_keeps_local_energies_and_all_forces(architecture):
    model = small_model(architecture=architecture, num_layers=3).eval()
    hops = message_hops(model)
    assert hops == (3 if architecture == "nequip" else 1)
    assert ghost_cutoff(model) == pytest.approx(hops * model.r_max)
    numbers, positions, edges, local = _subdomain_with_ghosts(model.r_max, hops)
    energies, forces = LammpsForces(model)(numbers, positions.clone(), edges, local)

    kept, layers = layer_edge_sets(edges, local, hops, per_layer=architecture == "nequip")
    sizes = [kept.shape[1]] + [len(used) for used in layers]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < edges.shape[1] / 3  # most of the shell is skipped
    for used in layers:  # each layer's edges are the first ones
        assert torch.equal(used, torch.arange(len(used)))
    pruned_energies, pruned_forces = LammpsForces(model)(numbers, positions.clone(), kept, local, *layers)
    own = local > 0
    np.testing.assert_allclose(pruned_energies[own], energies[own], rtol=0, atol=1e-12)
    np.testing.assert_allclose(pruned_forces, forces, rtol=0, atol=1e-12)
    assert forces.abs().max() > 0.1


def test_too_few_layers_of_edges_would_change_the_forces():
    """The check above can fail: a NequIP model given one hop fewer than it passes messages is wrong."""
    model = small_model(num_layers=3).eval()
    numbers, positions, edges, local = _subdomain_with_ghosts(model.r_max, 3)
    _, forces = LammpsForces(model)(numbers, positions.clone(), edges, local)
    kept, layers = layer_edge_sets(edges, local, 2, per_layer=True)
    _, short = LammpsForces(model)(numbers, positions.clone(), kept, local, *layers, layers[-1])
    assert (short - forces).abs().max() > 1e-6


def test_a_cached_package_is_found_only_for_the_same_model_file_and_dtype(tmp_path):
    one, other = tmp_path / "one.pth", tmp_path / "other.pth"
    one.write_bytes(b"weights")
    other.write_bytes(b"weights, trained further")
    assert _package_key(one, "float64") == _package_key(one, "float64")
    keys = {_package_key(one, "float64"), _package_key(one, "float32"), _package_key(other, "float64")}
    assert len(keys) == 3


def test_the_cache_keeps_the_most_recently_used_packages(tmp_path):
    import os

    cache = tmp_path / "packages"
    cache.mkdir()
    for k in range(CACHED_PACKAGES):
        (cache / f"{k:02d}.pt2").write_bytes(b"old")
        os.utime(cache / f"{k:02d}.pt2", (1000 + k, 1000 + k))  # 00 is the least recently used
    (tmp_path / "model.pt2").write_bytes(b"new")
    _keep(tmp_path / "model.pt2", cache / "new.pt2")
    kept = {p.name for p in cache.iterdir()}
    assert len(kept) == CACHED_PACKAGES and "00.pt2" not in kept and "new.pt2" in kept
    assert (cache / "new.pt2").read_bytes() == b"new"
