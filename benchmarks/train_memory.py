"""Peak memory and training throughput as the training set grows: held in memory vs read from a preprocessed file.

    python benchmarks/train_memory.py                  # 1x, 10x, 100x the Cu–Zr training set
    python benchmarks/train_memory.py --scales 1 10 --steps 20

The Cu–Zr training set (data/cuzr/train.extxyz.gz) is replicated:
in memory as copies of its frames with their neighbour lists (what training from
an extxyz file holds), on disk as one preprocessed file holding it N times
(``equicalc preprocess`` once, then ``merge_preprocessed``). Each case runs in a
fresh process: the statistics of the whole set, then optimisation steps of the
shipped model's architecture (data/cuzr/config.yaml, batch 4, 2 threads) on
random batches drawn from all of it. Printed: peak RSS after the data are ready
and after the steps, and structures/s over the steps after three warm-up steps.
An in-memory case whose memory, extrapolated from the smaller ones, would not fit
in this machine's RAM is not run, and its estimate is printed instead.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data" / "cuzr"


def peak_mib() -> float:
    """This process's peak resident memory (MiB): VmHWM, which starts afresh at exec (ru_maxrss does not)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(mode: str, source: str, scale: int, steps: int) -> dict:
    """One case, in this process: the data, the statistics, then timed optimisation steps."""
    import pickle

    import numpy as np
    import torch

    from equicalc.data import GraphDataset, collate, dataset_statistics
    from equicalc.model_io import build_model
    from equicalc.nn.forces import compute_properties
    from equicalc.preprocessed import PreprocessedDataset
    from equicalc.train import load_config
    from equicalc.train.loop import loss_terms

    torch.set_num_threads(2)
    cfg = load_config(DATA / "config.yaml")
    t0 = time.perf_counter()
    if mode == "disk":
        dataset = PreprocessedDataset(source)
    else:
        frames = pickle.loads(Path(source).read_bytes())
        frames = [f for _ in range(scale) for f in pickle.loads(pickle.dumps(frames))]  # scale independent copies
        dataset = GraphDataset(frames, cfg.model_r_max())
    stats = dataset_statistics(dataset)
    ready_s, ready_mib = time.perf_counter() - t0, peak_mib()
    options = dict(cfg.model.options, avg_num_neighbors=stats["avg_num_neighbors"])
    model = build_model("nequip", species=stats["species"], dtype="float32", scales=stats["force_rms"],
                        shifts=stats["energy_shifts"], **options)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    n_structures, t_start = 0, None
    for step in range(steps + 3):
        if step == 3:
            t_start, n_structures = time.perf_counter(), 0
        batch = collate([dataset[int(k)] for k in rng.choice(len(dataset), 4, replace=False)])
        out = compute_properties(model, batch.graph, forces=True, stress=False, training=True)
        loss = loss_terms(out, batch, cfg.loss)["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        n_structures += 4
    rate = n_structures / (time.perf_counter() - t_start)
    return {"mode": mode, "scale": scale, "frames": len(dataset), "ready_s": round(ready_s, 1),
            "ready_peak_mib": round(ready_mib), "peak_mib": round(peak_mib()), "structures_per_s": round(rate, 2)}


def run_case(mode: str, source: Path, scale: int, steps: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="2")
    cmd = [sys.executable, __file__, "--worker", mode, str(source), str(scale), "--steps", str(steps)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} x{scale} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def prepare(folder: Path, scales) -> tuple:
    """The frames (pickled, read once) and the preprocessed file of each scale."""
    import pickle

    from ase.io import read

    from equicalc.data import frame_from_atoms
    from equicalc.preprocessed import merge_preprocessed, preprocess
    from equicalc.train import load_config

    folder.mkdir(parents=True, exist_ok=True)
    frames_file, one = folder / "frames.pkl", folder / "train_x1.h5"
    if not (frames_file.exists() and one.exists()):
        print("reading the training set once (extxyz parsing takes a couple of minutes)...", flush=True)
        images = read(DATA / "train.extxyz.gz", ":")
        frames_file.write_bytes(pickle.dumps([frame_from_atoms(a, f"frame {k}") for k, a in enumerate(images)]))
        preprocess(images, one, load_config(DATA / "config.yaml").model_r_max(), overwrite=True)
    files = {}
    for scale in scales:
        files[scale] = folder / f"train_x{scale}.h5"
        if not files[scale].exists():
            merge_preprocessed([one] * scale, files[scale])
    return frames_file, files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--steps", type=int, default=30, help="timed optimisation steps (batch 4)")
    parser.add_argument("--folder", default="bench_train_memory", help="where the replicated files are kept")
    parser.add_argument("--worker", nargs=3, metavar=("MODE", "SOURCE", "SCALE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        mode, source, scale = args.worker
        print(json.dumps(worker(mode, source, int(scale), args.steps)))
        return
    frames_file, files = prepare(Path(args.folder), args.scales)
    ram_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    rows, memory = [], []
    for scale in args.scales:
        for mode, source in (("memory", frames_file), ("disk", files[scale])):
            if mode == "memory" and len(memory) >= 2:
                (s0, m0), (s1, m1) = memory[-2:]
                estimate = m1 + (m1 - m0) / (s1 - s0) * (scale - s1)
                if estimate > 0.8 * ram_mib:
                    rows.append({"mode": mode, "scale": scale, "estimate_mib": round(estimate)})
                    print(f"memory x{scale}: not run, it would need about {estimate / 1024:.0f} GiB "
                          f"(this machine has {ram_mib / 1024:.0f} GiB)", flush=True)
                    continue
            row = run_case(mode, source, scale, args.steps)
            if mode == "memory":
                memory.append((scale, row["ready_peak_mib"]))
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| data | frames | in memory: peak RSS (MiB) | structures/s | from disk: peak RSS (MiB) | structures/s |")
    print("|---|---|---|---|---|---|")
    for scale in args.scales:
        mem = next(r for r in rows if r["scale"] == scale and r["mode"] == "memory")
        disk = next(r for r in rows if r["scale"] == scale and r["mode"] == "disk")
        mem_cells = (f"{mem['peak_mib']} | {mem['structures_per_s']}" if "peak_mib" in mem
                     else f"(about {mem['estimate_mib']}: does not fit) | –")
        print(f"| {scale}× | {disk['frames']} | {mem_cells} | {disk['peak_mib']} | {disk['structures_per_s']} |")


if __name__ == "__main__":
    main()
