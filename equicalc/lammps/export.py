"""A model as LAMMPS's ``pair_style equicalc`` loads it: an AOTInductor package with its metadata.

    export_lammps("cuzr", "cuzr_lammps")      # writes cuzr_lammps/model.pt2

The package holds one compiled function of the atoms a LAMMPS process sees (its
own and the ghost atoms around its subdomain)::

    (numbers (N,) int64, positions (N, 3), edge_index (2, E) int64, local (N,), *layer_edges) -> (energies (N,), forces (N, 3))

``edge_index`` lists ordered pairs (i, j) closer than r_max, ``local`` is 1 for
the process's own atoms and 0 for ghosts, the energies are per atom (eV) and the
forces (eV/Å) are minus the gradient of the energy of the local atoms with
respect to every position, ghosts included (LAMMPS adds the ghosts' forces to
their owners). Edge vectors are taken from the positions directly: LAMMPS's
ghosts are periodic images already.

Only the local atoms' energies are needed, so most of the ghost shell's work is
skipped (``layer_edge_sets``): an atom's *depth* is the number of r_max hops
from the nearest local atom; a model that passes messages ``hops`` times needs
the edges whose centre i has depth < hops, and its layer k (0-based) only those
whose centre has depth < hops - k. The edges come ordered by the depth of
their centre, so that each layer's are the first ones: NequIP packages take,
for each layer after the first, the indices of its edges (``layer_edges``,
0 … E_k - 1, of which the network uses the count); Allegro (hops = 1) needs no
more than the edges of local centres. Energies of ghost atoms come out
incomplete and are not used.

The network and the force derivative are traced together (``make_fx`` unfolds
the autograd graph into plain operations), exported with symbolic atom and edge
counts, and compiled ahead of time by AOTInductor; the species, cutoffs and
dtype travel in the package's metadata.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
from pathlib import Path
from typing import Union

import torch

__all__ = ["export_lammps", "LammpsForces", "ghost_cutoff", "layer_edge_sets", "message_hops"]


class LammpsForces(torch.nn.Module):
    """Per-atom energies and the forces of the local atoms' energy: what the pair style evaluates."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, numbers, positions, edge_index, local, *layer_edges):
        positions = positions.requires_grad_(True)
        vectors = positions[edge_index[1]] - positions[edge_index[0]]
        if layer_edges:  # layer 0 takes every edge given, layer k the first len(layer_edges[k - 1])
            counts = [None] + [used.shape[0] for used in layer_edges]
            energies = self.model(numbers, edge_index, vectors, edge_pair=None, layer_edges=counts)
        else:
            energies = self.model(numbers, edge_index, vectors, edge_pair=None)
        (gradient,) = torch.autograd.grad([(energies * local).sum()], [positions])
        return energies.detach(), -gradient


def message_hops(model) -> int:
    """How many times the model passes messages between atoms: num_layers for NequIP, 1 for Allegro."""
    return model.spec.num_layers if model.architecture == "nequip" else 1


def ghost_cutoff(model) -> float:
    """How far (Å) beyond its subdomain a process must see atoms for exact local energies and forces:
    r_max for a strictly local model (Allegro), num_layers × r_max for message passing (NequIP)."""
    return float(model.r_max) * message_hops(model)


def layer_edge_sets(edge_index: torch.Tensor, local: torch.Tensor, hops: int, per_layer: bool):
    """The edges a package needs, as ``pair_style equicalc`` selects them (its reference in Python).

    Returns ``(edge_index, layer_edges)``: the edges whose centre lies fewer than
    ``hops`` hops from a local atom (layer 0's), nearest first, and
    (``per_layer``) for each further layer k = 1 … hops - 1 the indices of those
    whose centre lies fewer than ``hops - k`` hops away: the first ones.
    """
    n = local.shape[0]
    depth = torch.where(local > 0, 0, hops).to(torch.int64)
    for _ in range(hops - 1):
        reached = torch.full((n,), hops, dtype=torch.int64).scatter_reduce(0, edge_index[0], depth[edge_index[1]] + 1,
                                                                           reduce="amin")
        depth = torch.minimum(depth, reached)
    centre_depth, order = torch.sort(depth[edge_index[0]], stable=True)
    kept = edge_index[:, order[centre_depth < hops]]
    if not per_layer:
        return kept, []
    return kept, [torch.arange(int((centre_depth < hops - k).sum())) for k in range(1, hops)]


def _example(model, dtype):
    """A Cu–Zr-like rod of the model's species with local atoms at one end, and its edges (for tracing).

    Long enough that every depth up to the model's hops occurs, so that the atom
    count, the edge count and each layer's edge count all differ (equal sizes
    could be taken for one symbol by the compiler).
    """
    import numpy as np
    from ase.build import bulk
    from ase.data import atomic_numbers
    from ase.neighborlist import neighbor_list

    length = int(np.ceil(message_hops(model) * model.r_max / 3.7)) + 2
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True) * (2, 2, length)
    atoms.numbers = [atomic_numbers[model.species[k % len(model.species)]] for k in range(len(atoms))]
    atoms.positions += np.random.default_rng(0).normal(scale=0.05, size=atoms.positions.shape)
    atoms.pbc = False
    i, j = neighbor_list("ij", atoms, model.r_max)
    local = torch.as_tensor((atoms.positions[:, 2] < 3.0).astype(float), dtype=dtype)
    edges, layers = layer_edge_sets(torch.as_tensor(np.stack([i, j]), dtype=torch.int64), local,
                                    message_hops(model), model.architecture == "nequip")
    sizes = [len(atoms), edges.shape[1]] + [len(layer) for layer in layers]
    if len(set(sizes)) != len(sizes):
        raise RuntimeError(f"export_lammps: the tracing example has repeated sizes {sizes}")
    return (torch.as_tensor(atoms.numbers, dtype=torch.int64), torch.as_tensor(atoms.positions, dtype=dtype),
            edges, local, *layers)


@contextlib.contextmanager
def _distinct_sizes():
    """Atom and edge counts stay symbols of their own even where the example's values coincide."""
    previous = torch.fx.experimental._config.use_duck_shape
    torch.fx.experimental._config.use_duck_shape = False
    try:
        yield
    finally:
        torch.fx.experimental._config.use_duck_shape = previous


def _program(model, dtype):
    """The network and its force derivative as one exported graph with symbolic atom and edge counts."""
    from torch.export import Dim
    from torch.fx.experimental.proxy_tensor import make_fx

    example = _example(model, dtype)
    with _distinct_sizes():
        traced = make_fx(LammpsForces(model), tracing_mode="symbolic", _allow_non_fake_inputs=True,
                         _error_on_data_dependent_ops=True)(*[t.clone() for t in example])
    atoms, edges = Dim("atoms", min=2), Dim("edges", min=2)
    layers = tuple({0: Dim(f"layer_{k}_edges", min=2)} for k in range(len(example) - 4))
    return torch.export.export(traced, tuple(t.clone() for t in example),
                               dynamic_shapes=({0: atoms}, {0: atoms}, {1: edges}, {0: atoms}) + layers, strict=False)


def _compile(model, dtype: str, path: Path) -> None:
    """Trace, export and compile a copy of ``model`` in ``dtype`` into the AOTInductor package ``path``."""
    import copy

    from ase.data import atomic_numbers

    from ..device import resolve_dtype
    from ..nn.tensor_product import ChannelwiseTensorProduct

    torch_dtype = resolve_dtype(dtype)
    model = copy.deepcopy(model).to(torch_dtype).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    for module in model.modules():  # traced into the package: PyTorch operations, not the numba kernels
        if isinstance(module, ChannelwiseTensorProduct):
            module.kernels = False
    metadata = {"equicalc_format": "2", "hops": str(message_hops(model)),
                "layer_edges": "1" if model.architecture == "nequip" else "0", "species": " ".join(model.species),
                "numbers": " ".join(str(atomic_numbers[s]) for s in model.species), "r_max": repr(float(model.r_max)),
                "ghost_cutoff": repr(ghost_cutoff(model)), "dtype": dtype, "device": "cpu",
                "architecture": model.architecture}
    program = _program(model, torch_dtype)
    with _distinct_sizes():
        torch._inductor.aoti_compile_and_package(program, package_path=str(path),
                                                 inductor_configs={"aot_inductor.metadata": metadata})


def _package_key(source: Path, dtype: str) -> str:
    """What a compiled package depends on: the model file, equicalc's code, the dtype, torch and the CPU."""
    h = hashlib.sha256(source.read_bytes())
    for p in sorted(Path(__file__).resolve().parents[1].rglob("*.py")):
        h.update(p.read_bytes())
    h.update(f"{dtype} {torch.__version__} {platform.machine()} {torch.backends.cpu.get_cpu_capability()}".encode())
    return h.hexdigest()[:16]


CACHED_PACKAGES = 16  # the most recently used packages kept in the cache (a few MB each)


def _keep(package: Path, cached: Path) -> None:
    """Copy a compiled package into the cache (whole or not at all, also with exports running side by side),
    and drop all but the CACHED_PACKAGES most recently used."""
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
    shutil.copyfile(package, partial)
    os.replace(partial, cached)
    newest_first = sorted(cached.parent.glob("*.pt2"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in newest_first[CACHED_PACKAGES:]:
        old.unlink(missing_ok=True)


def export_lammps(model, directory: Union[str, os.PathLike], dtype: str = "float64", overwrite: bool = False,
                  cache: bool = True) -> Path:
    """Write ``directory/model.pt2``, the package ``pair_style equicalc`` loads; returns its path.

    Args:
        model: a model file, a shipped model's name, or a loaded model (left as it is: a copy is exported).
        dtype: ``float64`` (exact; the default) or ``float32`` (several times faster on CPUs: for MD).
        overwrite: replace an existing package.
        cache: for a model given as a file or name, keep the compiled package under
            ``~/.cache/equicalc/lammps/packages`` and copy it from there next time (keyed by the model
            file's bytes, equicalc's code, the dtype, torch and the CPU's instruction set; the 16 most
            recently used are kept).

    Compiling takes a minute or two on two CPU cores (tracing, export and the C++ compilation);
    a cached package is copied in a moment.
    """
    from ..device import resolve_dtype
    from ..model_io import load_model
    from ..models import model_path
    from ..nn.forces import is_fused
    from .build import cache_root

    resolve_dtype(dtype)  # a clear error for an unknown dtype before anything is compiled
    cached = None
    if isinstance(model, (str, os.PathLike)):
        source = model_path(model)
        model = load_model(source)
        if cache:
            cached = cache_root() / "packages" / f"{_package_key(source, dtype)}.pt2"
    if is_fused(model):
        raise ValueError("export_lammps: give the model as load_model returns it (not an EquiCalc inference model)")
    out = Path(directory) / "model.pt2"
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; choose another directory or overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.pt2")
    if cached is not None and cached.is_file():
        shutil.copyfile(cached, tmp)
        os.utime(cached)  # recently used: kept longest
    else:
        _compile(model, dtype, tmp)
        if cached is not None:
            _keep(tmp, cached)
    os.replace(tmp, out)
    return out
