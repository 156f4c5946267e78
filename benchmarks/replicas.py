"""Atom-steps per second of N replicas of ASE MD: in lockstep with batched force calls, against one by one.

Random Cu64Zr36 cells at 16.3 Å^3/atom, Langevin NVT at 1500 K, the shipped ``cuzr``
model (EquiCalc defaults: float32, numba kernels on CPU). "one by one" runs the
N replicas one after the other with the calculator itself; "batched" runs them in
lockstep through ``equicalc.ensemble.BatchedCalculators`` (one ``calculate_batch``
per MD step for all N). The ratio is what batching gains.

    python benchmarks/replicas.py [--sizes 108 250] [--replicas 1 2 4 8] [--steps 20] [--device cpu]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from ase import units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta

from equicalc import EquiCalc
from equicalc.ensemble import BatchedCalculators
from equicalc.systems import random_alloy


def _replicas(n_atoms: int, n: int) -> list:
    out = []
    for k in range(n):
        atoms = random_alloy(n_atoms, "Cu64Zr36", volume_per_atom=16.3, seed=k)
        thermalize_momenta(atoms, temperature_K=1500, rng=np.random.default_rng(k))
        out.append(atoms)
    return out


def _dynamics(atoms, k):
    return Langevin(atoms, 2 * units.fs, temperature_K=1500, friction=0.01 / units.fs, rng=np.random.default_rng(k))


def one_by_one(calc, n_atoms: int, n: int, steps: int) -> float:
    """Atom-steps per second, replicas run one after the other."""
    replicas = _replicas(n_atoms, n)
    for atoms in replicas:
        atoms.calc = calc
        _dynamics(atoms, 0).run(2)  # warm-up: kernels, neighbour list
    t0 = time.perf_counter()
    for k, atoms in enumerate(replicas):
        _dynamics(atoms, k).run(steps)
    return n * n_atoms * steps / (time.perf_counter() - t0)


def batched(calc, n_atoms: int, n: int, steps: int) -> float:
    """Atom-steps per second, replicas in lockstep with one batched call per step."""
    replicas = _replicas(n_atoms, n)
    group = BatchedCalculators(calc, n)
    dyns = []
    for k, atoms in enumerate(replicas):
        atoms.calc = group[k]
        dyns.append(_dynamics(atoms, k))
    group.run([lambda d=d: d.run(2) for d in dyns])  # warm-up
    t0 = time.perf_counter()
    group.run([lambda d=d: d.run(steps) for d in dyns])
    return n * n_atoms * steps / (time.perf_counter() - t0)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[108, 250])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", default="cuzr")
    args = parser.parse_args(argv)
    calc = EquiCalc(args.model, device=args.device)
    print(f"{args.model} on {calc.device}, {torch.get_num_threads()} threads; atom-steps per second")
    print(f"{'atoms':>6} {'replicas':>9} {'one by one':>11} {'batched':>9} {'ratio':>6}")
    for n_atoms in args.sizes:
        for n in args.replicas:
            a = one_by_one(calc, n_atoms, n, args.steps)
            b = batched(calc, n_atoms, n, args.steps)
            print(f"{n_atoms:>6} {n:>9} {a:>11.0f} {b:>9.0f} {b / a:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
