"""What a GPU gives, in one short run: MD step times, batched throughput and training speed on a device.

    python benchmarks/gpu_check.py                         # cuda: 108 … 10 000 atoms (a few minutes)
    python benchmarks/gpu_check.py --device cpu --sizes 108 --quick     # the same path on the CPU (a check of the script)

``benchmarks/gpu_check.sh`` runs it after the CUDA tests (``tests/test_cuda.py``). Printed:
ms per ASE MD step (velocity Verlet, energy, forces and stress) with the shipped NequIP model in
float32 and float64, and µs per atom and step; ``calculate_batch`` throughput on 64 cells of
108 atoms against one-by-one calls; training structures/s of the shipped architecture on 64
Cu–Zr frames (batch 4, energy + forces + stress).
"""
from __future__ import annotations

import argparse
import csv
import itertools
import time
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).resolve().parent.parent / "data" / "cuzr"


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def md_table(device: str, sizes, steps: int) -> None:
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    from equicalc import EquiCalc
    from equicalc.md import md_step_time
    from equicalc.systems import random_alloy

    print("| atoms | float32 ms/step | float32 µs/atom/step | float64 ms/step |")
    print("|---:|---:|---:|---:|")
    for n in sizes:
        atoms = random_alloy(n, "Cu64Zr36", volume_per_atom=16.3, seed=0)
        MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
        ms = {dtype: md_step_time(atoms.copy(), EquiCalc("cuzr", device=device, dtype=dtype), steps=steps, warmup=3)
              for dtype in ("float32", "float64")}
        print(f"| {n} | {ms['float32']:.2f} | {ms['float32'] * 1e3 / n:.2f} | {ms['float64']:.2f} |", flush=True)


def batch_throughput(device: str, count: int) -> None:
    from equicalc import EquiCalc
    from equicalc.systems import random_alloy

    cells = [random_alloy(108, "Cu64Zr36", volume_per_atom=16.3, seed=k) for k in range(count)]
    calc = EquiCalc("cuzr", device=device, dtype="float32")
    calc.calculate_batch(cells[:4])
    synchronize(device)
    t0 = time.perf_counter()
    calc.calculate_batch(cells)
    synchronize(device)
    batched = count / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for atoms in cells:
        atoms = atoms.copy()
        atoms.calc = calc
        atoms.get_forces(), atoms.get_stress()
    one_by_one = count / (time.perf_counter() - t0)
    print(f"calculate_batch, {count} cells of 108 atoms, float32: {batched:.1f} structures/s batched, "
          f"{one_by_one:.1f} one by one ({batched / one_by_one:.1f}×)", flush=True)


def training_rate(device: str, frames: int, epochs: int, work: Path) -> None:
    from ase.io import iread, write

    from equicalc.train import config_from_dict, train

    data = list(itertools.islice(iread(DATA / "train.extxyz.gz", index=":"), frames + 8))
    write(work / "train.extxyz", data[:frames])
    write(work / "val.extxyz", data[frames:])
    cfg = config_from_dict({
        "run_dir": str(work / "run"),
        "data": {"train": str(work / "train.extxyz"), "val": str(work / "val.extxyz")},
        "model": {"architecture": "nequip", "dtype": "float32", "r_max": 5.0, "l_max": 1, "parity": True,
                  "num_layers": 3, "num_features": 32},
        "training": {"batch_size": 4, "max_epochs": 1 + epochs, "device": device}})
    train(cfg, show_progress=False, echo=False, overwrite=True)
    with open(work / "run" / "metrics.csv") as fh:  # the first epoch compiles and warms up: left out
        rate = float(np.median([float(row["structures_per_s"]) for row in list(csv.DictReader(fh))[1:]]))
    print(f"training, shipped architecture, float32, batch 4, {frames} frames: {rate:.1f} structures/s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sizes", type=int, nargs="+", default=[108, 500, 2000, 10000])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="few steps, cells and frames (a check of the script)")
    parser.add_argument("--work", default="gpu_check_work")
    args = parser.parse_args()
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SystemExit("gpu_check: no CUDA device (use --device cpu to check the script)")
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    md_table(args.device, args.sizes, 2 if args.quick else args.steps)
    batch_throughput(args.device, 8 if args.quick else 64)
    training_rate(args.device, 8 if args.quick else 64, 1 if args.quick else 2, work)


if __name__ == "__main__":
    main()
