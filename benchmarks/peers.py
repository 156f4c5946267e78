"""ms per ASE MD step: equicalc against NequIP (AOTInductor and eager) and MACE, on the same cells, in one run.

Each code runs in its own virtual environment, made once (nothing is installed at run time;
torch first, so that pip does not resolve a CUDA build):

    python -m venv peers/nequip && peers/nequip/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
    peers/nequip/bin/pip install nequip==0.19.1
    python -m venv peers/mace && peers/mace/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
    peers/mace/bin/pip install mace-torch==0.3.16          # brings e3nn 0.4.4
    python benchmarks/peers.py --nequip peers/nequip/bin/python --mace peers/mace/bin/python

One model size for all (untrained weights; the cost does not depend on them): l_max 1 with both
parities, 32 features, r_max 5 Å, 8 Bessel functions, radial MLP 2 × 64; equicalc and NequIP
3 layers; MACE hidden irreps 32x0e+32x1o, max_ell 1, 2 interactions, correlation 3; no ZBL term in any. The NequIP
model is made the way its users make one: ``nequip-train`` for one step on 16 Cu–Zr frames,
then ``nequip-compile --mode aotinductor --target ase`` (the eager NequIP calculator loads the
checkpoint, as NequIP's own tests do). Setup is cached in ``--work``.

Cu64Zr36 cells at the glass density (16.3 Å³/atom), velocity Verlet at 1 fs with energy,
forces and stress every step (as NPT needs). Every calculator runs in its own process with the
same threads; the processes take turns in rounds of a few steps, so that a slow phase of the
machine is shared by all. Printed per cell and dtype: median and minimum ms per step, the
first call (model set-up, compilation, first neighbour list), the process's peak memory, and
each code's median over equicalc's.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

MARK = "@@peers@@ "  # the worker's answers; anything else a package prints is passed over
CODES = ("equicalc", "nequip-aoti", "nequip-eager", "mace")
ARCH = dict(r_max=5.0, l_max=1, num_features=32, num_layers=3, num_basis=8, radial_hidden=64, radial_layers=2,
            avg_num_neighbors=32.0)


# ----------------------------------------------------------------------------- workers (any venv)

def _equicalc(dtype, work):
    from equicalc import EquiCalc, build_model

    model = build_model(species=["Cu", "Zr"], parity=True, seed=0, zbl=False, **ARCH)  # the peers have no ZBL term
    return EquiCalc(model, dtype=dtype, device="cpu")


def _nequip(dtype, work, compiled):
    from nequip.integrations.ase import NequIPCalculator

    if compiled:
        return NequIPCalculator.from_compiled_model(str(work / f"nequip_{dtype}.nequip.pt2"), device="cpu")
    return NequIPCalculator._from_saved_model(str(work / f"nequip_{dtype}" / "last.ckpt"), device="cpu")


def _mace(dtype, work):
    import numpy as np
    import torch
    from e3nn import o3
    from mace.calculators import MACECalculator
    from mace.modules import RealAgnosticResidualInteractionBlock, ScaleShiftMACE

    torch.set_default_dtype(getattr(torch, dtype))
    torch.manual_seed(0)
    block = RealAgnosticResidualInteractionBlock
    model = ScaleShiftMACE(
        r_max=ARCH["r_max"], num_bessel=ARCH["num_basis"], num_polynomial_cutoff=6, max_ell=1,
        interaction_cls=block, interaction_cls_first=block, num_interactions=2, num_elements=2,
        hidden_irreps=o3.Irreps("32x0e+32x1o"), MLP_irreps=o3.Irreps("16x0e"), atomic_energies=np.array([-3.5, -6.2]),
        avg_num_neighbors=ARCH["avg_num_neighbors"], atomic_numbers=[29, 40], correlation=3,
        gate=torch.nn.functional.silu, radial_MLP=[ARCH["radial_hidden"]] * ARCH["radial_layers"],
        atomic_inter_scale=0.3, atomic_inter_shift=0.0)
    return MACECalculator(models=model, device="cpu", default_dtype=dtype)


def _peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(code: str, dtype: str, work: Path, threads: int) -> None:
    """Answer the main process's requests (JSON lines on stdin) until it closes the pipe."""
    import torch
    from ase import units
    from ase.io import read
    from ase.md.verlet import VelocityVerlet

    torch.set_num_threads(threads)
    make = {"equicalc": _equicalc, "mace": _mace, "nequip-aoti": lambda d, w: _nequip(d, w, True),
            "nequip-eager": lambda d, w: _nequip(d, w, False)}[code]
    t0 = time.perf_counter()
    calc = make(dtype, work)
    print(MARK + json.dumps({"setup_s": time.perf_counter() - t0}), flush=True)
    dyn = atoms = None
    for line in sys.stdin:
        request = json.loads(line)
        if "cell" in request:
            atoms = read(request["cell"])
            atoms.calc = calc
            t0 = time.perf_counter()
            atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
            first = (time.perf_counter() - t0) * 1e3
            dyn = VelocityVerlet(atoms, 1.0 * units.fs)
            dyn.run(2)
            answer = {"first_ms": first}
        elif "steps" in request:
            times = []
            for _ in range(request["steps"]):
                t0 = time.perf_counter()
                dyn.run(1)
                atoms.get_potential_energy(), atoms.get_stress()
                times.append((time.perf_counter() - t0) * 1e3)
            answer = {"ms": times, "peak_mib": _peak_mib()}
        print(MARK + json.dumps(answer), flush=True)


# ----------------------------------------------------------------------------- set-up of the peer models

NEQUIP_CONFIG = """
run: [train]
seed: 0
cutoff_radius: {r_max}
model_type_names: [Cu, Zr]
data:
  _target_: nequip.data.datamodule.ASEDataModule
  seed: 0
  train_file_path: {train}
  val_file_path: {val}
  transforms:
    - _target_: nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper
      model_type_names: ${{model_type_names}}
      chemical_species_to_atom_type_map: {{Cu: Cu, Zr: Zr}}
    - _target_: nequip.data.transforms.NeighborListTransform
      r_max: ${{cutoff_radius}}
  train_dataloader: {{_target_: torch.utils.data.DataLoader, batch_size: 4, shuffle: true}}
  val_dataloader: {{_target_: torch.utils.data.DataLoader, batch_size: 4}}
  stats_manager:
    _target_: nequip.data.CommonDataStatisticsManager
    type_names: ${{model_type_names}}
trainer:
  _target_: lightning.Trainer
  max_epochs: {epochs}{limits}
  logger: false
  enable_progress_bar: false
  callbacks:
    - {{_target_: lightning.pytorch.callbacks.ModelCheckpoint, dirpath: "{out}", save_last: true}}
training_module:
  _target_: nequip.train.EMALightningModule
  loss: {{_target_: nequip.train.EnergyForceStressLoss, per_atom_energy: true,
          coeffs: {{total_energy: 1.0, forces: 1.0, stress: 1.0}}}}
  val_metrics: {{_target_: nequip.train.EnergyForceStressMetrics,
                 coeffs: {{total_energy_mae: 1.0, forces_mae: 1.0, stress_mae: 1.0}}}}
  optimizer: {{_target_: torch.optim.Adam, lr: 0.001}}
  model:
    _target_: nequip.model.NequIPGNNModel
    seed: 0
    model_dtype: {dtype}
    type_names: ${{model_type_names}}
    r_max: ${{cutoff_radius}}
    l_max: {l_max}
    parity: true
    num_layers: {num_layers}
    num_features: {num_features}
    num_bessels: {num_basis}
    radial_mlp_depth: {radial_layers}
    radial_mlp_width: {radial_hidden}
    avg_num_neighbors: ${{training_data_stats:num_neighbors_mean}}
    per_type_energy_shifts: ${{training_data_stats:per_atom_energy_mean}}
    per_type_energy_scales: ${{training_data_stats:forces_rms}}
"""


def nequip_config(train, val, out, dtype: str, epochs: int, one_step: bool = False) -> str:
    """A ``nequip-train`` config for the benchmark's model size (``one_step``: one training and one validation batch)."""
    limits = "\n  limit_train_batches: 1\n  limit_val_batches: 1" if one_step else ""
    return NEQUIP_CONFIG.format(train=train, val=val, out=out, dtype=dtype, epochs=epochs, limits=limits, **ARCH)


def peer_env(code: str, threads: int) -> dict:
    """The environment a code runs in: ``threads`` threads, and MACE's loading work-around."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads))
    if code.startswith("mace"):  # e3nn 0.4.4 loads its own constants.pt in a way torch >= 2.6 refuses by default
        env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    return env


def make_nequip_models(python: str, work: Path, dtypes) -> None:
    """nequip-train one step, then nequip-compile, per dtype (skipped when already in ``work``)."""
    from ase.io import read, write

    train, val = work / "nequip_train.extxyz", work / "nequip_val.extxyz"
    if not val.exists():
        frames = read(Path(__file__).resolve().parent.parent / "data" / "cuzr" / "val.extxyz.gz", index=":16")
        write(train, frames[:12])
        write(val, frames[12:])
    bin_dir = Path(python).parent
    for dtype in dtypes:
        compiled = work / f"nequip_{dtype}.nequip.pt2"
        if compiled.exists():
            continue
        out = work / f"nequip_{dtype}"
        config = work / f"nequip_{dtype}.yaml"
        config.write_text(nequip_config(train, val, out, dtype, epochs=1, one_step=True))
        for cmd in ([str(bin_dir / "nequip-train"), "-cp", str(work), "-cn", config.stem,
                     f"hydra.run.dir={work / ('hydra_' + dtype)}"],
                    [str(bin_dir / "nequip-compile"), str(out / "last.ckpt"), str(compiled), "--mode", "aotinductor",
                     "--device", "cpu", "--target", "ase"]):
            print(f"  {Path(cmd[0]).name} ({dtype}) ...", flush=True)
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed:\n{(done.stdout + done.stderr)[-3000:]}")


# ----------------------------------------------------------------------------- the run

class Worker:
    """One calculator in its own process (its venv's python)."""

    def __init__(self, python, code, dtype, work, threads):
        env = peer_env(code, threads)
        self.log = work / f"worker_{code}_{dtype}.log"  # the worker's warnings and errors
        self.process = subprocess.Popen([python, __file__, "--worker", code, dtype, str(work), str(threads)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log.open("w"),
                                        text=True, env=env)
        self.code = code
        self.setup_s = self.ask(None)["setup_s"]

    def ask(self, request):
        if request is not None:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        for line in self.process.stdout:
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])
        raise RuntimeError(f"{self.code} worker stopped (exit code {self.process.wait()}); see {self.log}")

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def cells(sizes, work):
    """A Cu64Zr36 cell of each size with 300 K velocities, written as extxyz (read by every worker)."""
    import numpy as np
    from ase.io import write
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    from equicalc.systems import random_alloy

    paths = {}
    for n in sizes:
        atoms = random_alloy(n, "Cu64Zr36", volume_per_atom=16.3, seed=0)
        MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(1))
        paths[n] = work / f"cell_{n}.extxyz"
        write(paths[n], atoms)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nequip", type=os.path.abspath, help="python of the NequIP venv (NequIP skipped without it)")
    parser.add_argument("--mace", type=os.path.abspath, help="python of the MACE venv (MACE skipped without it)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[108, 500, 2048])
    parser.add_argument("--dtypes", nargs="+", choices=("float32", "float64"), default=["float32", "float64"])
    parser.add_argument("--rounds", type=int, default=5, help="turns each calculator takes per cell")
    parser.add_argument("--steps", type=int, default=4, help="MD steps per turn (halved above 1000 atoms)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default="peers_work", help="cells and peer models are kept here")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        code, dtype, work, threads = args.worker
        worker(code, dtype, Path(work), int(threads))
        return
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    pythons = {"equicalc": sys.executable}
    if args.nequip:
        make_nequip_models(args.nequip, work, args.dtypes)
        pythons.update({"nequip-aoti": args.nequip, "nequip-eager": args.nequip})
    if args.mace:
        pythons["mace"] = args.mace
    paths = cells(args.sizes, work)
    print(f"\nASE MD step (energy, forces, stress), {args.threads} threads per code, ms; "
          f"ratio = code's median / equicalc's median\n")
    print("| atoms | dtype | code | median | min | first call | peak MiB | ratio |")
    print("|---:|---|---|---:|---:|---:|---:|---:|")
    for dtype in args.dtypes:
        workers = [Worker(pythons[c], c, dtype, work, args.threads) for c in CODES if c in pythons]
        print(f"| set-up, {dtype} (s) | " + ", ".join(f"{w.code} {w.setup_s:.1f}" for w in workers) + " |||||||")
        try:
            for n in args.sizes:
                first = {w.code: w.ask({"cell": str(paths[n])})["first_ms"] for w in workers}
                times, peak = {w.code: [] for w in workers}, {}
                steps = args.steps if n <= 1000 else max(1, args.steps // 2)
                for _ in range(args.rounds):
                    for w in workers:
                        answer = w.ask({"steps": steps})
                        times[w.code] += answer["ms"]
                        peak[w.code] = answer["peak_mib"]
                ours = statistics.median(times["equicalc"])
                for w in workers:
                    med = statistics.median(times[w.code])
                    print(f"| {n} | {dtype} | {w.code} | {med:.1f} | {min(times[w.code]):.1f} | {first[w.code]:.0f} "
                          f"| {peak[w.code]:.0f} | {med / ours:.2f} |", flush=True)
        finally:
            for w in workers:
                w.close()


if __name__ == "__main__":
    main()
