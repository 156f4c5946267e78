"""A model as LAMMPS's ``pair_style equicalc`` loads it: an AOTInductor package with its metadata.

    export_lammps("cuzr", "cuzr_lammps")      # writes cuzr_lammps/model.pt2

The package holds one compiled function of the atoms a LAMMPS process sees (its
own and the ghost atoms around its subdomain)::

    (numbers (N,) int64, positions (N, 3), edge_index (2, E) int64, local (N,)) -> (energies (N,), forces (N, 3))

``edge_index`` lists every ordered pair (i, j) closer than r_max among the N
atoms, ``local`` is 1 for the process's own atoms and 0 for ghosts, the energies
are per atom (eV) and the forces (eV/Å) are minus the gradient of the energy of
the local atoms with respect to every position, ghosts included (LAMMPS adds the
ghosts' forces to their owners). Edge vectors are taken from the positions
directly: LAMMPS's ghosts are periodic images already.

The network and the force derivative are traced together (``make_fx`` unfolds
the autograd graph into plain operations), exported with symbolic atom and edge
counts, and compiled ahead of time by AOTInductor; the species, cutoffs and
dtype travel in the package's metadata.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import torch

__all__ = ["export_lammps", "LammpsForces", "ghost_cutoff"]


class LammpsForces(torch.nn.Module):
    """Per-atom energies and the forces of the local atoms' energy: what the pair style evaluates."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, numbers, positions, edge_index, local):
        positions = positions.requires_grad_(True)
        vectors = positions[edge_index[1]] - positions[edge_index[0]]
        energies = self.model(numbers, edge_index, vectors, edge_pair=None)
        (gradient,) = torch.autograd.grad([(energies * local).sum()], [positions])
        return energies.detach(), -gradient


def ghost_cutoff(model) -> float:
    """How far (Å) beyond its subdomain a process must see atoms for exact local energies and forces:
    r_max for a strictly local model (Allegro), num_layers × r_max for message passing (NequIP)."""
    return float(model.r_max) * (model.spec.num_layers if model.architecture == "nequip" else 1)


def _example(model, dtype):
    """A small non-periodic Cu–Zr-like cluster of the model's species, with its edges (for tracing)."""
    import numpy as np
    from ase.build import bulk
    from ase.data import atomic_numbers
    from ase.neighborlist import neighbor_list

    atoms = bulk("Cu", "fcc", a=3.7, cubic=True) * (2, 2, 2)
    atoms.numbers = [atomic_numbers[model.species[k % len(model.species)]] for k in range(len(atoms))]
    atoms.positions += np.random.default_rng(0).normal(scale=0.05, size=atoms.positions.shape)
    atoms.pbc = False
    i, j = neighbor_list("ij", atoms, model.r_max)
    local = torch.ones(len(atoms), dtype=dtype)
    local[-3:] = 0
    return (torch.as_tensor(atoms.numbers, dtype=torch.int64), torch.as_tensor(atoms.positions, dtype=dtype),
            torch.as_tensor(np.stack([i, j]), dtype=torch.int64), local)


def _program(model, dtype):
    """The network and its force derivative as one exported graph with symbolic atom and edge counts."""
    from torch.export import Dim
    from torch.fx.experimental.proxy_tensor import make_fx

    example = _example(model, dtype)
    previous = torch.fx.experimental._config.use_duck_shape
    torch.fx.experimental._config.use_duck_shape = False  # atom and edge counts stay symbols of their own
    try:
        traced = make_fx(LammpsForces(model), tracing_mode="symbolic", _allow_non_fake_inputs=True,
                         _error_on_data_dependent_ops=True)(*[t.clone() for t in example])
    finally:
        torch.fx.experimental._config.use_duck_shape = previous
    atoms, edges = Dim("atoms", min=2), Dim("edges", min=2)
    return torch.export.export(traced, tuple(t.clone() for t in example),
                               dynamic_shapes=({0: atoms}, {0: atoms}, {1: edges}, {0: atoms}), strict=False)


def export_lammps(model, directory: Union[str, os.PathLike], dtype: str = "float64", overwrite: bool = False) -> Path:
    """Write ``directory/model.pt2``, the package ``pair_style equicalc`` loads; returns its path.

    Args:
        model: a model file, a shipped model's name, or a loaded model (left as it is: a copy is exported).
        dtype: ``float64`` (exact; the default) or ``float32``.
        overwrite: replace an existing package.

    Takes about a minute on two CPU cores (tracing, export and the C++ compilation).
    """
    import copy

    from ase.data import atomic_numbers

    from ..device import resolve_dtype
    from ..model_io import load_model
    from ..models import model_path
    from ..nn.forces import is_fused

    if isinstance(model, (str, os.PathLike)):
        model = load_model(model_path(model))
    if is_fused(model):
        raise ValueError("export_lammps: give the model as load_model returns it (not fuse()d)")
    torch_dtype = resolve_dtype(dtype)
    out = Path(directory) / "model.pt2"
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; choose another directory or overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).to(torch_dtype).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    metadata = {"equicalc_format": "1", "species": " ".join(model.species),
                "numbers": " ".join(str(atomic_numbers[s]) for s in model.species), "r_max": repr(float(model.r_max)),
                "ghost_cutoff": repr(ghost_cutoff(model)), "dtype": dtype, "device": "cpu",
                "architecture": model.architecture}
    tmp = out.with_name(out.name + ".tmp.pt2")
    torch._inductor.aoti_compile_and_package(_program(model, torch_dtype), package_path=str(tmp),
                                             inductor_configs={"aot_inductor.metadata": metadata})
    os.replace(tmp, out)
    return out
