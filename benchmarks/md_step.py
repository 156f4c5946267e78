"""Milliseconds per ASE MD step with EquiCalc (energy, forces and stress every step).

Cu64Zr36 cells of 108, 500 and 2000 atoms at the glass density (16.3 Å^3/atom),
a freshly initialised NequIP model at the reference size (l_max 1, 3 layers,
32 features, r_max 5 Å, parity on), float32 and float64. For each case it
prints the time per velocity-Verlet step and the share of it spent outside the
network (neighbour list, Atoms <-> tensor conversion, ASE's integrator).

    python benchmarks/md_step.py [--sizes 108 500 2000] [--steps 10] [--threads 2] [--kernels fused torch]
    python benchmarks/md_step.py --model cuzr      # a model file or shipped model instead (its cutoff and layers)

``--kernels``: ``fused`` (EquiCalc's default on CPU: numba convolution kernels and the radial table)
and/or ``torch`` (PyTorch operations, as on GPUs).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from ase.md.velocitydistribution import thermalize_momenta

import equicalc.calculator as calculator_module
from equicalc import EquiCalc, build_model, load_model
from equicalc.md import md_step_time
from equicalc.models import model_path
from equicalc.systems import random_alloy


def time_md(model, n_atoms: int, steps: int, dtype: str, fused: bool):
    """(ms per step, share of the step outside the network, edges in the neighbour list)."""
    atoms = random_alloy(n_atoms, "Cu64Zr36", volume_per_atom=16.3)
    calc = EquiCalc(model, dtype=dtype, device="cpu", fused_kernels=fused)
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(1))
    network = []
    original = calculator_module.compute_properties

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        out = original(*args, **kwargs)
        network.append(time.perf_counter() - t0)
        return out

    calculator_module.compute_properties = timed
    try:
        md_step_time(atoms, calc, steps=1, warmup=2)  # kernels compiled, neighbour list built
        network.clear()
        ms = md_step_time(atoms, calc, steps=steps, warmup=0)
    finally:
        calculator_module.compute_properties = original
    net = sum(network) / steps
    edges = int(calc.neighbors._ref["edge_index"].shape[1]) if calc.neighbors._ref else 0
    return ms, 1.0 - net * 1e3 / ms, edges


def benchmark_model(model=None):
    """(model, one-line description): the given model file or shipped name, else a freshly initialised NequIP
    of the reference architecture."""
    if model is None:
        return (build_model(species=["Cu", "Zr"], r_max=5.0, l_max=1, parity=True, num_layers=3, num_features=32,
                            avg_num_neighbors=32.0, seed=0),
                "NequIP l_max 1, 3 layers, 32 features, r_max 5 Å (fresh weights)")
    loaded = load_model(model_path(model))
    hyper = loaded.spec.hyperparameters()
    sizes = "".join(f", {hyper[key]} {word}" for key, word in (("num_layers", "layers"), ("num_features", "features"))
                    if key in hyper)
    return loaded, f"{model}: {loaded.spec.architecture}{sizes}, r_max {loaded.r_max:g} Å"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[108, 500, 2000])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    parser.add_argument("--kernels", nargs="+", choices=["fused", "torch"], default=["fused", "torch"])
    parser.add_argument("--model", default=None,
                        help="model file or shipped model name (default: a fresh model of the reference architecture)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        import numba

        numba.set_num_threads(args.threads)
    model, label = benchmark_model(args.model)
    print(f"equicalc MD step, CPU, {torch.get_num_threads()} threads, {label}")
    print(f"{'atoms':>6} {'dtype':>8} {'kernels':>8} {'ms/step':>9} {'outside net':>12} {'list pairs':>11}")
    for n in args.sizes:
        for dtype in ("float32", "float64"):
            for kernels in args.kernels:
                steps = max(2, args.steps if n <= 500 else args.steps // 2)
                ms, outside, edges = time_md(model, n, steps, dtype, kernels == "fused")
                print(f"{n:>6} {dtype:>8} {kernels:>8} {ms:>9.1f} {outside:>11.1%} {edges:>11}", flush=True)


if __name__ == "__main__":
    main()
