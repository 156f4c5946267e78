"""Training throughput with 1 and more DistributedDataParallel processes on this machine.

    python benchmarks/train_ddp.py                     # 1 and 2 processes, 8 structures per step
    python benchmarks/train_ddp.py --processes 1 2 4 --batch 16 --device cuda

Each case trains the shipped model's architecture (data/cuzr/config.yaml) on the
Cu–Zr training set, preprocessed once to an HDF5 file, through equicalc's own
training step (``setup``, ``step_batches``, ``step_on``): the same structures per
step whatever the number of processes, the CPU cores shared out among them (gloo
on CPU, NCCL on CUDA). Printed: structures/s over the timed steps after three
warm-up steps, and the ratio to one process.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data" / "cuzr"


def worker(h5: str, batch: int, steps: int, device: str, run_dir: str) -> None:
    import torch

    from equicalc.train import load_config
    from equicalc.train.distributed import join, leave
    from equicalc.train.loop import setup, step_batches, step_on

    ranks = join(device)
    cfg = load_config(DATA / "config.yaml")
    cfg.data.train, cfg.data.val, cfg.data.test, cfg.data.val_size = h5, None, None, 16
    cfg.training.batch_size = batch // ranks.world
    cfg.training.device = device
    cfg.training.num_threads = max(1, (os.cpu_count() or 1) // ranks.world) if device == "cpu" else None
    cfg.run_dir = run_dir
    run = setup(cfg, restart=False, echo=False, overwrite=True, ranks=ranks)
    sizes = run.data["train"].frame_sizes()
    batches = step_batches(len(run.data["train"]), cfg.training.batch_size, torch.Generator().manual_seed(0), ranks)
    for k, (chunk, mine) in zip(range(steps + 3), batches):
        if k == 3:
            ranks.barrier()
            t0, done = time.perf_counter(), 0
        step_on(run, chunk, mine, sizes)
        if k >= 3:
            done += len(chunk)
    ranks.barrier()
    if ranks.main:
        print(json.dumps({"processes": ranks.world, "threads": torch.get_num_threads(),
                          "structures_per_s": round(done / (time.perf_counter() - t0), 2)}))
    leave(ranks)


def run_case(n: int, args, h5: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        threads = max(1, (os.cpu_count() or 1) // n)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        inner = [__file__, "--worker", str(h5), "--batch", str(args.batch), "--steps", str(args.steps),
                 "--device", args.device, "--run-dir", tmp]
        if n == 1:
            cmd = [sys.executable, *inner]
        else:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n), *inner]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{n} process(es) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=8, help="structures per step (all processes together)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--data", default="bench_train_memory/train_x1.h5",
                        help="preprocessed training set (made from data/cuzr/train.extxyz.gz when missing)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.batch, args.steps, args.device, args.run_dir)
        return
    h5 = Path(args.data)
    if not h5.exists():
        from equicalc.preprocessed import preprocess
        from equicalc.train import load_config

        preprocess(DATA / "train.extxyz.gz", h5, load_config(DATA / "config.yaml").model_r_max())
    bad = [n for n in args.processes if args.batch % n]
    if bad:
        parser.error(f"--batch {args.batch} does not share evenly among {bad} processes")
    rows = []
    for n in args.processes:
        rows.append(run_case(n, args, h5))
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["structures_per_s"]
    print(f"\n| processes | threads each | structures/s | vs {rows[0]['processes']} |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['processes']} | {r['threads']} | {r['structures_per_s']} | {r['structures_per_s'] / base:.2f}× |")


if __name__ == "__main__":
    main()
