"""On a CUDA device, EquiCalc and the torch neighbour list equal their CPU results (skipped without CUDA).

Run on a GPU machine by ``benchmarks/gpu_check.sh``; CI has no GPU, so these are skipped there.
"""
import numpy as np
import pytest
import torch

from equicalc import EquiCalc
from equicalc.neighbors import available_backends, neighbor_list
from equicalc.systems import random_alloy

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _pairs(edge_index, shifts):
    rows = np.concatenate([edge_index.cpu().numpy().T, shifts.cpu().numpy()], axis=1)
    return {tuple(r) for r in rows}


@pytest.mark.parametrize("n_atoms", [16, 500])
def test_torch_neighbour_list_on_cuda_equals_the_cpu_reference(n_atoms):
    atoms = random_alloy(n_atoms, "Cu64Zr36", volume_per_atom=16.3, seed=n_atoms)
    args = (torch.as_tensor(atoms.positions), torch.as_tensor(atoms.cell.array)[None], torch.ones(1, 3, dtype=bool),
            torch.tensor([n_atoms]), 5.0)
    reference = "vesin" if "vesin" in available_backends() else "torch"
    want = _pairs(*neighbor_list(*args, backend=reference))
    got = _pairs(*neighbor_list(*[a.cuda() if torch.is_tensor(a) else a for a in args], backend="torch"))
    assert got == want


@pytest.mark.parametrize("model", ["cuzr", "cuzr-allegro"])
def test_equicalc_on_cuda_equals_cpu_in_float64(model):
    atoms = random_alloy(108, "Cu64Zr36", volume_per_atom=16.3, seed=3)
    atoms.rattle(0.1, seed=1)
    results = {}
    for device in ("cpu", "cuda"):
        a = atoms.copy()
        a.calc = EquiCalc(model, device=device, dtype="float64")
        results[device] = (a.get_potential_energy(), a.get_forces(), a.get_stress())
    assert results["cuda"][0] == pytest.approx(results["cpu"][0], rel=1e-12)
    np.testing.assert_allclose(results["cuda"][1], results["cpu"][1], rtol=0, atol=1e-10)
    np.testing.assert_allclose(results["cuda"][2], results["cpu"][2], rtol=0, atol=1e-11)


def test_equicalc_float32_on_cuda_is_close_to_float64():
    atoms = random_alloy(500, "Cu64Zr36", volume_per_atom=16.3, seed=4)
    forces = {}
    for dtype in ("float32", "float64"):
        a = atoms.copy()
        a.calc = EquiCalc("cuzr", device="cuda", dtype=dtype)
        forces[dtype] = a.get_forces()
    np.testing.assert_allclose(forces["float32"], forces["float64"], rtol=0, atol=2e-4)
