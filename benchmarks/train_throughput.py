"""Training throughput (structures/s): equicalc, NequIP 0.19.1 and MACE 0.3.16, each with its own trainer, in one run.

    python benchmarks/train_throughput.py --nequip peers/nequip/bin/python --mace peers/mace/bin/python

(the venvs as in ``peers.py``). The same 200 Cu–Zr training frames (from data/cuzr, 64–250 atoms)
and 8 validation frames; batch 4; energy + forces + stress loss; Adam; the model size of
``peers.py`` (equicalc and NequIP: l_max 1 with both parities, 32 features, 3 layers, r_max 5 Å,
8 Bessel functions, radial MLP 2 × 64; MACE: 32x0e+32x1o, max_ell 1, 2 interactions, correlation 3).

Each trainer runs twice from the command line its users type (``equicalc train``, ``nequip-train``,
``mace_run_train``), for 1 epoch and for 1 + ``--epochs`` epochs; the difference of the two wall
times, divided by the extra epochs' structures, is the steady rate: start-up, data loading and
statistics, the first epoch's warm-up and the final save drop out. Validation runs every epoch in
all three. Threads: ``--threads`` for every trainer (OMP_NUM_THREADS and torch).
"""
from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

from peers import nequip_config, peer_env  # this folder's NequIP config and thread settings

DATA = Path(__file__).resolve().parent.parent / "data" / "cuzr"
N_VAL = 8

EQUICALC_CONFIG = """
data: {{train: train.extxyz, val: val.extxyz}}
model: {{architecture: nequip, dtype: {dtype}, seed: 0, r_max: 5.0, l_max: 1, parity: true, num_layers: 3,
        num_features: 32, num_basis: 8, radial_hidden: 64, radial_layers: 2, zbl: false}}
loss: {{energy_weight: 1.0, forces_weight: 1.0, stress_weight: 1.0}}
training: {{batch_size: 4, eval_batch_size: 4, max_epochs: {epochs}, optimizer: adam, lr: 0.001, seed: 0,
           num_threads: {threads}}}
"""

def write_frames(work: Path, n_train: int) -> None:
    """train/val extxyz files (ASE's energy/forces/stress) and MACE's copies (REF_ keys)."""
    from ase.io import iread, write

    frames = list(itertools.islice(iread(DATA / "train.extxyz.gz", index=":"), n_train + N_VAL))
    write(work / "train.extxyz", frames[:n_train])
    write(work / "val.extxyz", frames[n_train:])
    for name, part in (("train", frames[:n_train]), ("val", frames[n_train:])):
        copies = []
        for atoms in part:
            copy = atoms.copy()
            copy.info["REF_energy"] = atoms.get_potential_energy()
            copy.arrays["REF_forces"] = atoms.get_forces()
            copy.info["REF_stress"] = atoms.get_stress()
            copies.append(copy)
        write(work / f"{name}_mace.extxyz", copies)


def command(code: str, python: str, dtype: str, epochs: int, threads: int, work: Path):
    """The trainer's command line for ``epochs`` epochs (config files written into ``work``)."""
    run = work / f"{code}_{dtype}_{epochs}"
    bin_dir = Path(python).parent
    if code == "equicalc":
        config = work / f"equicalc_{dtype}_{epochs}.yaml"
        config.write_text(EQUICALC_CONFIG.format(dtype=dtype, epochs=epochs, threads=threads))
        return [python, "-m", "equicalc", "train", str(config), "--run-dir", str(run), "--overwrite", "--quiet"]
    if code == "nequip":
        config = work / f"nequip_{dtype}_{epochs}.yaml"
        config.write_text(nequip_config(work / "train.extxyz", work / "val.extxyz", run, dtype, epochs))
        return [str(bin_dir / "nequip-train"), "-cp", str(work), "-cn", config.stem, f"hydra.run.dir={run}"]
    return [str(bin_dir / "mace_run_train"), "--name", "bench", "--work_dir", str(run), "--seed", "0",
            "--train_file", str(work / "train_mace.extxyz"), "--valid_file", str(work / "val_mace.extxyz"),
            "--energy_key", "REF_energy", "--forces_key", "REF_forces", "--stress_key", "REF_stress",
            "--E0s", "average", "--model", "MACE", "--hidden_irreps", "32x0e+32x1o", "--max_L", "1",
            "--num_interactions", "2", "--correlation", "3", "--r_max", "5.0", "--num_radial_basis", "8",
            "--radial_MLP", "[64, 64]", "--loss", "stress", "--batch_size", "4", "--valid_batch_size", "4",
            "--max_num_epochs", str(epochs), "--eval_interval", "1", "--default_dtype", dtype, "--device", "cpu",
            "--lr", "0.001", "--num_workers", "0"]


def wall_time(cmd, threads: int, code: str, log: Path) -> float:
    t0 = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=peer_env(code, threads), cwd=log.parent)
    if done.returncode != 0:
        raise RuntimeError(f"{code} failed; see {log}")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nequip", type=os.path.abspath, help="python of the NequIP venv (NequIP skipped without it)")
    parser.add_argument("--mace", type=os.path.abspath, help="python of the MACE venv (MACE skipped without it)")
    parser.add_argument("--dtypes", nargs="+", choices=("float32", "float64"), default=["float32", "float64"])
    parser.add_argument("--epochs", type=int, default=2, help="epochs timed beyond the first")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=200, help="training frames")
    parser.add_argument("--work", default="train_throughput_work")
    args = parser.parse_args()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    write_frames(work, args.frames)
    pythons = {"equicalc": sys.executable}
    if args.nequip:
        pythons["nequip"] = args.nequip
    if args.mace:
        pythons["mace"] = args.mace
    print(f"training throughput, {args.frames} Cu–Zr frames, batch 4, E+F+S loss, {args.threads} threads\n")
    print("| dtype | code | 1 epoch (s) | " + f"{1 + args.epochs} epochs (s) | structures/s | equicalc's rate / this |")
    print("|---|---|---:|---:|---:|---:|")
    for dtype in args.dtypes:
        walls = {code: {} for code in pythons}
        for epochs in (1, 1 + args.epochs):  # every code's short run, then every code's long run
            for code, python in pythons.items():
                cmd = command(code, python, dtype, epochs, args.threads, work)
                walls[code][epochs] = wall_time(cmd, args.threads, code, work / f"{code}_{dtype}_{epochs}.log")
        rate = {code: args.epochs * args.frames / (w[1 + args.epochs] - w[1]) for code, w in walls.items()}
        for code, w in walls.items():
            print(f"| {dtype} | {code} | {w[1]:.0f} | {w[1 + args.epochs]:.0f} | {rate[code]:.2f} "
                  f"| {rate['equicalc'] / rate[code]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
