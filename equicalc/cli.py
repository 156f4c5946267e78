"""Command line: ``equicalc train | preprocess | eval | deploy | lammps-plugin | models | md | quench | rdf | voronoi |
phonons``.

    equicalc train config.yaml            # fit a model; --restart resumes
    torchrun --nproc_per_node 2 -m equicalc train config.yaml   # the same, DistributedDataParallel
    equicalc preprocess data.extxyz -o data.h5 --config config.yaml   # frames + neighbour lists on disk
    equicalc eval model.pth data.extxyz   # error table, optional predictions and parity plot
    equicalc deploy checkpoint.pt model.pth
    equicalc deploy cuzr --lammps cuzr_lammps   # cuzr_lammps/model.pt2 for pair_style equicalc
    equicalc lammps-plugin                # builds equicalcplugin.so once, prints its path
    equicalc models                       # the shipped models, their cutoffs and errors
    equicalc md --atoms 500 --steps 200 --temperature 1500
    equicalc quench                       # Cu64Zr36 melt-quench -> Tg, V(T)/H(T), RDF, icosahedra: one page
    equicalc rdf md.traj                  # g(r), partials, coordination numbers, S(q)
    equicalc voronoi md.traj              # Voronoi polyhedra per species, icosahedral fraction
    equicalc phonons                      # B2 CuZr phonons (model vs the EAM reference when installed)

Commands that need a model take ``--model``: a model file, a shipped model's
name (default ``cuzr``), or ``random`` for a freshly initialised network. This
module parses arguments and calls library functions; it holds no library code.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from .files import check_output
from .systems import composition_fractions


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _composition(text: str) -> dict:
    try:
        return composition_fractions(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _finite_float(text: str) -> float:
    value = float(text)
    if not abs(value) < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def _calculator(args):
    """The calculator of ``--model`` and a label for it."""
    from .calculator import EquiCalc
    from .models import random_model, shipped_models

    if args.model == "random":
        return (EquiCalc(random_model(seed=getattr(args, "seed", 0)), device=args.device, dtype=args.dtype),
                "a freshly initialised Cu-Zr NequIP (random weights: not a potential)")
    label = f"the shipped model '{args.model}'" if args.model in shipped_models() else args.model
    return EquiCalc(args.model, device=args.device, dtype=args.dtype), label


def cmd_md(args) -> int:
    from .md import run_replicas
    from .systems import random_alloy

    outputs = _replica_outputs(args.output, args.replicas) if args.output else []
    for path in outputs:
        _check_new_output(path, args.overwrite)
    calc, label = _calculator(args)
    structures = [random_alloy(args.atoms, args.composition, volume_per_atom=16.3, seed=args.seed + k)
                  for k in range(args.replicas)]
    print(f"MD ({args.ensemble.upper()}) of {args.replicas} x {args.atoms} atoms, "
          f"{structures[0].get_chemical_formula()}, {args.temperature:g} K, {args.steps} steps of {args.timestep:g} fs, "
          f"with {label}" + (" (replicas in lockstep, one batched call per step)" if args.replicas > 1 else ""))
    results = run_replicas(structures, calc, args.steps, args.temperature, args.ensemble, args.pressure,
                           args.timestep, args.seed, trajectory=args.output or None, interval=args.interval,
                           show_progress=not args.quiet,
                           record={"command": "equicalc md", "model": label, "composition": args.composition,
                                   "atoms": args.atoms})
    for k, res in enumerate(results):
        print(f"{'replica ' + str(k) + ': ' if args.replicas > 1 else 'done: '}{res['ms_per_step']:.1f} ms/step; "
              f"last 20% of the run: T = {res['mean_temperature_K']:.0f} K, Epot = {res['mean_epot_per_atom']:.4f} "
              f"eV/atom, V = {res['mean_volume_per_atom']:.2f} Å^3/atom")
    for path, res in zip(outputs, results):
        print(f"trajectory written to {path}, what made it to {res['record']}")
    return 0


def _replica_outputs(output: str, replicas: int) -> list:
    """The trajectory file of each replica (``md.traj``; ``md_0.traj``, ``md_1.traj``... for several)."""
    if replicas == 1:
        return [output]
    p = Path(output)
    return [str(p.with_name(f"{p.stem}_{k}{p.suffix}")) for k in range(replicas)]


def _check_new_output(path: str, overwrite: bool) -> None:
    """An output file that must not silently replace an earlier run's."""
    check_output(path)
    if Path(path).exists() and not overwrite:
        raise FileExistsError(f"{path} exists (an earlier run's output); choose another --output, or --overwrite "
                              "to replace it")


def cmd_train(args) -> int:
    from .train import load_config, train

    cfg = load_config(args.config)
    if args.run_dir:
        cfg.run_dir = args.run_dir
    if args.device:
        cfg.training.device = args.device
    if args.threads:
        cfg.training.num_threads = args.threads
    summary = train(cfg, restart=args.restart, show_progress=not args.quiet, overwrite=args.overwrite)
    return 0 if summary["epoch"] > 0 else 1


def cmd_preprocess(args) -> int:
    from .preprocessed import is_preprocessed, merge_preprocessed, preprocess

    if all(is_preprocessed(p) for p in args.inputs):
        summary = merge_preprocessed(args.inputs, args.output, overwrite=args.overwrite, show_progress=not args.quiet)
    elif len(args.inputs) == 1:
        keys = dict(energy_key=args.energy_key, forces_key=args.forces_key, stress_key=args.stress_key or None)
        r_max, species = args.r_max, args.species
        if args.config:
            from .train import load_config

            cfg = load_config(args.config)
            r_max = r_max or cfg.model_r_max()
            species = species or cfg.data.species
            keys = dict(energy_key=cfg.data.energy_key, forces_key=cfg.data.forces_key, stress_key=cfg.data.stress_key)
        if r_max is None:
            print("preprocess: give --r-max (Å) or --config (its model's r_max)", file=sys.stderr)
            return 2
        summary = preprocess(args.inputs[0], args.output, r_max, species=species, overwrite=args.overwrite,
                             show_progress=not args.quiet, **keys)
    else:
        print("preprocess: give one data file, or several preprocessed (.h5) files to merge", file=sys.stderr)
        return 2
    print(f"{summary['path']}: {summary['frames']} frames, {summary['atoms']} atoms, {summary['edges']} edges within "
          f"{summary['r_max']:g} Å, species {' '.join(summary['species'])}, {summary['bytes'] / 2**20:.1f} MiB")
    return 0


def cmd_eval(args) -> int:
    from .data import read_frames
    from .device import resolve_device
    from .evaluate import (error_metrics, error_metrics_by_group, format_metrics, format_metrics_by_group,
                           parity_plot, predict_frames, write_predictions)
    from .model_io import load_model
    from .models import model_path

    for path in (args.plot, args.output):
        if path:
            check_output(path)
    device = resolve_device(args.device)
    model = load_model(model_path(args.model), device=device)
    frames = read_frames(args.data, energy_key=args.energy_key, forces_key=args.forces_key,
                         stress_key=args.stress_key or None)
    arrays = predict_frames(model, frames, batch_size=args.batch_size, device=device, show_progress=not args.quiet)
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


def cmd_deploy(args) -> int:
    if args.lammps:
        from .lammps import export_lammps

        if args.model:
            print("deploy --lammps DIR takes one model (file, checkpoint or shipped name), no output file",
                  file=sys.stderr)
            return 2
        path = export_lammps(args.checkpoint, args.lammps, dtype=args.dtype, overwrite=args.overwrite,
                             cache=not args.no_cache)
        print(f"LAMMPS model written to {path}\n  plugin load <path printed by: equicalc lammps-plugin>\n"
              f"  pair_style equicalc\n  pair_coeff * * {path} <one element per atom type>")
        return 0
    from .train import deploy

    if not args.model:
        print("deploy: give the model file to write (or --lammps DIR)", file=sys.stderr)
        return 2
    deploy(args.checkpoint, args.model, ema=not args.no_ema)
    print(f"model written to {args.model}")
    return 0


def cmd_lammps_plugin(args) -> int:
    from .lammps import build_plugin

    print(build_plugin(args.build_dir, verbose=args.verbose))
    return 0


def cmd_models(args) -> int:
    from .models import describe, shipped_models

    print(f"{'name':<14}{'architecture':<14}{'species':<10}{'r_max (Å)':>10}{'dtype':>9}{'parameters':>12}"
          f"{'E (meV/atom)':>14}{'F (meV/Å)':>11}{'S (meV/Å³)':>12}")
    notes = []
    for name in shipped_models():
        d = describe(name)
        err = d["test_errors"]
        cells = "".join(f"{err[k]:>{w}.2f}" if k in err else f"{'–':>{w}}"
                        for k, w in (("energy_mae", 14), ("forces_mae", 11), ("stress_mae", 12)))
        print(f"{name:<14}{d['architecture']:<14}{'-'.join(d['species']):<10}{d['r_max']:>10.2f}{d['dtype']:>9}"
              f"{d['parameters']:>12d}{cells}")
        notes.append(f"  {name}: {d['description']}" + (f"; errors: MAE on {err['frames']}" if "frames" in err else ""))
    print("\n".join(notes))
    return 0


def cmd_quench(args) -> int:
    from .analysis.quench import EnsembleQuenchResult, quench
    from .analysis.series import quench_series
    from .systems import random_alloy

    first = args.first_replica
    if first and args.rates:
        raise ValueError("--first-replica adds replicas to one quench; it does not combine with --rates")
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    check_output(out / ("series.json" if args.rates else "summary.json"))
    calc, label = _calculator(args)
    indices = range(first, first + args.replicas)
    starts = [random_alloy(args.atoms, args.composition, volume_per_atom=17.5, seed=args.seed + k) for k in indices]
    rates = " and ".join(f"{r:g}" for r in args.rates) if args.rates else f"{args.rate:g}"
    symbols = starts[0].get_chemical_symbols()
    counts = " + ".join(f"{symbols.count(s)} {s}" for s in sorted(set(symbols)))
    which = f" (replicas {first}–{indices[-1]}, beside those already in {out}/)" if first else ""
    print(f"melt-quench of {args.replicas} x {args.atoms} atoms ({counts}){which}: "
          f"{args.t_melt:g} K for {args.melt_time:g} ps, cooling at {rates} K/ps to {args.t_final:g} K, hold "
          f"{args.hold_time:g} ps, {args.pressure:g} bar, with {label}; output in {out}/")
    protocol = dict(replicas=args.replicas, t_melt=args.t_melt, t_final=args.t_final, pressure=args.pressure,
                    timestep=args.timestep, melt_time=args.melt_time, hold_time=args.hold_time, window=args.window,
                    seed=args.seed, show_progress=not args.quiet, overwrite=args.overwrite,
                    trajectory_interval=args.interval, checkpoint_interval=args.interval)
    if not args.rates:
        res = quench(starts, calc, cooling_rate=args.rate, directory=out, first_replica=first, **protocol)
        if first:  # the results of every replica in the folder that has finished
            res = EnsembleQuenchResult.load(out, finished=True)
        _quench_outputs(res, out, args, label)
        return 0
    series = quench_series(starts, calc, args.rates, directory=out, **protocol)
    for rate, res in zip(series.rates, series.results):
        print(f"--- {rate:g} K/ps")
        _quench_outputs(res, out / f"rate_{rate:g}", args, label)
    print("--- Tg against the cooling rate")
    summary = series.summary()
    for quantity in ("volume", "enthalpy"):
        try:
            print(series.rate_fit(quantity))
        except ValueError as exc:
            print(f"no fit of Tg from {quantity}: {exc}")
    series.plot(out / "series.png")
    summary["model"] = label
    (out / "series.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {out}/series.png, series.json, and each rate's outputs in rate_*/")
    return 0


def _quench_outputs(res, out: Path, args, label: str) -> None:
    """Print a quench's (or ensemble's) results; write its one-page ``quench.png`` and ``summary.json``."""
    from .analysis.quench import report

    ranges = _fit_ranges(args)
    summary = res.summary(**ranges)
    replicas = len(getattr(res, "replicas", [res]))
    for key in ("volume", "enthalpy", "volume_hyperbola", "enthalpy_hyperbola", "volume_pooled", "enthalpy_pooled"):
        quantity = key.split("_")[0]
        if f"tg_{key}" not in summary:  # the pooled fits: ensembles only
            continue
        tg = summary["fits"].get(key)
        if tg is None:
            print(f"no Tg from {quantity}: {summary[f'tg_{key}']['error']}")
            continue
        print(tg)
        if not summary[f"tg_{key}"]["resolved"]:
            print(f"  no kink resolved in {quantity}(T): the two branches have nearly the same slope; a slower "
                  "--rate, more --atoms or other fit ranges may resolve it")
    for suffix, name in (("", "windows"), ("_hyperbola", "whole-curve")):
        if summary.get(f"tg_volume_enthalpy_agree{suffix}") is False:
            print(f"  Tg from V(T) and from H(T) ({name} fits) differ by more than twice their combined error")
    if "glass_volume_per_atom" in summary:
        spread = (f" (± {summary['glass_volume_per_atom_error']:.3f} and ± {summary['glass_epot_per_atom_error']:.4f}"
                  f" over {replicas} replicas)" if replicas > 1 else "")
        print(f"glass at {args.t_final:g} K: V = {summary['glass_volume_per_atom']:.3f} Å^3/atom, "
              f"Epot = {summary['glass_epot_per_atom']:.4f} eV/atom{spread}")
    if summary["rdf"] is not None:
        print("RDF of the glass, first peaks (Å): "
              + ", ".join(f"{k} {v:.2f}" for k, v in summary["rdf_first_peaks_A"].items()))
    for species, value in summary.get("glass_icosahedral_fraction", {}).items():
        error = summary.get("glass_icosahedral_fraction_error", {}).get(species)
        print(f"{species}-centred full icosahedra ⟨0,0,12,0⟩ in the glass: {value:.3f}"
              + (f" ± {error:.3f}" if error is not None else ""))
    report(res, summary, out / "quench.png", **ranges)
    summary.pop("fits"), summary.pop("rdf")
    summary["model"] = label
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    csv_files = "quench.csv" if replicas == 1 and not args.first_replica else "replica_*/quench.csv"
    print(f"wrote {out}/{csv_files}, quench.png (the one-page report), summary.json")


def _fit_ranges(args) -> dict:
    """The Tg fit ranges of the arguments that lie inside the protocol's temperatures (others: the defaults)."""
    ranges = {}
    for name, (lo, hi) in (("liquid_range", args.liquid_range), ("glass_range", args.glass_range)):
        if args.t_final <= lo < hi <= args.t_melt:
            ranges[name] = (lo, hi)
        else:
            print(f"--{name.replace('_', '-')} {lo:g} {hi:g} K lies outside {args.t_final:g}–{args.t_melt:g} K; "
                  "the fit uses its default range instead")
    return ranges


def cmd_rdf(args) -> int:
    from .analysis.rdf import rdf

    for path in (args.plot, args.csv, args.sq_plot):
        if path:
            check_output(path)
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
        res.write_csv(args.csv)
        print(f"g(r) written to {args.csv}")
    if args.sq_plot:
        res.structure_factor().plot(path=args.sq_plot)
        print(f"S(q) plot written to {args.sq_plot}")
    return 0


def cmd_voronoi(args) -> int:
    from .analysis.voronoi import voronoi

    if args.plot:
        check_output(args.plot)
    res = voronoi(args.trajectory, area_threshold=args.area_threshold, edge_threshold=args.edge_threshold,
                  backend=args.backend, radii=args.radii, index=args.index, show_progress=not args.quiet)
    print(f"{len(res.indices)} frames, species {sorted(res.species)}; Voronoi index <n3,n4,n5,n6>, fraction of "
          "the centre atoms over all frames:")
    for species in sorted(res.species):
        print(f"  {species}-centred: " + ", ".join("<{},{},{},{}> ".format(*index) + f"{fraction:.3f}"
                                                  for index, fraction in res.most_frequent(species, args.top)))
        print(f"  {species}-centred full icosahedra <0,0,12,0>: {res.icosahedral_fraction(species).mean():.3f}")
    if args.plot:
        res.plot(res.default_centre, path=args.plot)
        print(f"plot written to {args.plot}")
    return 0


def _radii(text: str) -> dict:
    """``Cu=1.28,Zr=1.60`` -> {"Cu": 1.28, "Zr": 1.6} (Å)."""
    try:
        radii = {k.strip(): float(v) for k, v in (item.split("=") for item in text.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SYMBOL=RADIUS pairs such as Cu=1.28,Zr=1.60, got {text!r}")
    if not all(math.isfinite(r) and r > 0 for r in radii.values()):
        raise argparse.ArgumentTypeError(f"radii must be positive, got {text!r}")
    return radii


def cmd_phonons(args) -> int:
    from .analysis.phonons import frequency_range, phonons, plot_phonons
    from .systems import relaxed_b2

    check_output(args.output)
    calc, label = _calculator(args)
    runs = {"model": calc}
    if not args.no_reference:
        from .reference import eam_calculator

        try:
            runs["EAM (Mendelev)"] = eam_calculator()
        except (ImportError, FileNotFoundError) as exc:
            print(f"no EAM reference ({exc}); model only")
    results = {}
    for name, c in runs.items():
        atoms = relaxed_b2(c)
        results[name] = phonons(atoms, c, supercell=(args.supercell,) * 3, displacement=args.displacement)
        fmin, fmax = frequency_range(results[name])
        print(f"{name}: B2 CuZr a = {atoms.cell[0, 0]:.4f} Å; frequencies {fmin:.2f} to {fmax:.2f} THz"
              + ("  (negative = imaginary: dynamically unstable)" if fmin < -0.1 else ""))
    plot_phonons(results, args.output, title=f"B2 CuZr phonons ({label})")
    print(f"plot written to {args.output}")
    return 0


def _model_options(parser, seed: bool = True) -> None:
    """The options every command that runs a model shares."""
    parser.add_argument("--model", default="cuzr",
                        help="model file, shipped model name (default cuzr; see `equicalc models`), or 'random'")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    parser.add_argument("--dtype", choices=["float32", "float64"], default=None, help="model precision (default: as stored)")
    if seed:
        parser.add_argument("--seed", type=int, default=0, help="seed of the structure and the dynamics")
        parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _structure_options(parser, atoms: int) -> None:
    parser.add_argument("--atoms", type=_positive_int, default=atoms, help=f"number of atoms (default {atoms})")
    parser.add_argument("--composition", type=_composition, default="Cu64Zr36",
                        help="chemical formula of the random alloy (default Cu64Zr36)")


def _train_parsers(sub) -> None:
    tr = sub.add_parser("train", help="train a model from a YAML config")
    tr.add_argument("config", help="YAML config (see the README's config reference)")
    tr.add_argument("--restart", action="store_true",
                    help="resume from <run_dir>/checkpoint_last.pt (the same config and data only)")
    tr.add_argument("--overwrite", action="store_true", help="start afresh where run_dir holds a run (deletes it)")
    tr.add_argument("--run-dir", help="override run_dir of the config")
    tr.add_argument("--device", help="override training.device (auto, cpu, cuda)")
    tr.add_argument("--threads", type=_positive_int, help="override training.num_threads (CPU threads; may change "
                                                          "on --restart)")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=cmd_train)
    pp = sub.add_parser("preprocess", help="frames and their neighbour lists to an HDF5 file that training reads "
                                            "lazily (or merge such files)")
    pp.add_argument("inputs", nargs="+", help="a data file (extxyz or any ase.io.read format, streamed), or several "
                                              "preprocessed files to merge")
    pp.add_argument("-o", "--output", required=True, help="HDF5 file to write")
    pp.add_argument("--config", help="training config: r_max, species and label keys from it")
    pp.add_argument("--r-max", type=_positive_float, help="cutoff of the neighbour lists, Å")
    pp.add_argument("--species", nargs="+", help="chemical symbols of the model (default: those in the data)")
    pp.add_argument("--energy-key", default="energy")
    pp.add_argument("--forces-key", default="forces")
    pp.add_argument("--stress-key", default="stress", help="'' to ignore stress")
    pp.add_argument("--overwrite", action="store_true", help="replace an existing output")
    pp.add_argument("--quiet", action="store_true", help="no progress bar")
    pp.set_defaults(func=cmd_preprocess)
    ev = sub.add_parser("eval", help="errors of a model on labelled frames")
    ev.add_argument("model", help="model file or shipped model name")
    ev.add_argument("data", help="labelled frames (extxyz or any ase.io.read format)")
    ev.add_argument("--batch-size", type=_positive_int, default=16)
    ev.add_argument("--device", default="auto")
    ev.add_argument("--output", help="write frames with predictions (pred_energy, pred_forces, pred_stress) as extxyz")
    ev.add_argument("--plot", help="write a parity plot (PNG)")
    ev.add_argument("--by", metavar="KEY", help="also a table per value of this info key (e.g. config_type)")
    ev.add_argument("--energy-key", default="energy")
    ev.add_argument("--forces-key", default="forces")
    ev.add_argument("--stress-key", default="stress", help="'' to ignore stress")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(func=cmd_eval)
    dp = sub.add_parser("deploy", help="turn a training checkpoint into a model file, or a model into LAMMPS's form")
    dp.add_argument("checkpoint", help="checkpoint_best.pt or checkpoint_last.pt of a run (with --lammps: any model "
                                       "file, checkpoint or shipped model name)")
    dp.add_argument("model", nargs="?", help="model file to write")
    dp.add_argument("--no-ema", action="store_true", help="use the raw weights instead of their moving average")
    dp.add_argument("--lammps", metavar="DIR", help="write DIR/model.pt2 for pair_style equicalc (AOTInductor; about "
                                                    "a minute)")
    dp.add_argument("--dtype", choices=("float64", "float32"), default="float64", help="with --lammps (default float64)")
    dp.add_argument("--overwrite", action="store_true", help="with --lammps: replace DIR/model.pt2")
    dp.add_argument("--no-cache", action="store_true", help="with --lammps: compile again, even if this model was "
                                                            "compiled before (~/.cache/equicalc/lammps/packages)")
    dp.set_defaults(func=cmd_deploy)
    lp = sub.add_parser("lammps-plugin", help="build equicalcplugin.so (pair_style equicalc) once; print its path")
    lp.add_argument("--build-dir", help="where to build (default ~/.cache/equicalc/lammps)")
    lp.add_argument("--verbose", action="store_true", help="show the compiler's output")
    lp.set_defaults(func=cmd_lammps_plugin)
    sub.add_parser("models", help="list the shipped models").set_defaults(func=cmd_models)


def _md_parsers(sub) -> None:
    md = sub.add_parser("md", help="run ASE molecular dynamics of a random Cu–Zr cell with a model")
    _structure_options(md, 108)
    md.add_argument("--steps", type=_non_negative_int, default=200, help="number of MD steps (default 200)")
    md.add_argument("--temperature", type=_positive_float, default=1500.0, help="temperature, K (default 1500)")
    md.add_argument("--pressure", type=_finite_float, default=0.0, help="pressure for NPT, bar (default 0)")
    md.add_argument("--timestep", type=_positive_float, default=2.0, help="time step, fs (default 2)")
    md.add_argument("--ensemble", choices=["nvt", "npt", "nve"], default="nvt",
                    help="Langevin NVT, MTK NPT or velocity-Verlet NVE")
    md.add_argument("--output", default="md.traj", help="trajectory file ('' for none)")
    md.add_argument("--interval", type=_positive_int, default=10, help="write every N steps (default 10)")
    md.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    md.add_argument("--replicas", type=_positive_int, default=1,
                    help="independent replicas (seeds seed, seed+1...) advanced in lockstep, forces batched")
    _model_options(md)
    md.set_defaults(func=cmd_md)
    qu = sub.add_parser("quench", help="Cu–Zr melt-quench: Tg from V(T) and H(T), RDF and icosahedral order, one page")
    _structure_options(qu, 108)
    qu.add_argument("--t-melt", type=_positive_float, default=2000.0, help="melt temperature, K (default 2000)")
    qu.add_argument("--t-final", type=_positive_float, default=300.0, help="final temperature, K (default 300)")
    qu.add_argument("--rate", type=_positive_float, default=200.0, help="cooling rate, K/ps (default 200)")
    qu.add_argument("--rates", type=_positive_float, nargs="+", metavar="RATE",
                    help="a cooling-rate series instead (K/ps): a quench per rate in OUTPUT_DIR/rate_<rate>, Tg "
                         "against log rate with a fit (series.png, series.json)")
    qu.add_argument("--melt-time", type=_finite_float, default=2.0, help="ps at t-melt before cooling (default 2)")
    qu.add_argument("--hold-time", type=_finite_float, default=1.0, help="ps at t-final after cooling (default 1)")
    qu.add_argument("--timestep", type=_positive_float, default=2.0, help="fs (default 2)")
    qu.add_argument("--pressure", type=_finite_float, default=0.0, help="bar (default 0)")
    qu.add_argument("--window", type=_positive_float, default=50.0, help="temperature window of the V/H averages, K")
    qu.add_argument("--liquid-range", type=float, nargs=2, default=(1200.0, 1800.0), metavar=("LO", "HI"),
                    help="K, fit range of the liquid branch (default 1200 1800: the Cu64Zr36 liquid above Tg)")
    qu.add_argument("--glass-range", type=float, nargs=2, default=(300.0, 700.0), metavar=("LO", "HI"),
                    help="K, fit range of the glass branch (default 300 700)")
    qu.add_argument("--interval", type=_positive_int, default=50, help="steps between trajectory frames and saved states")
    qu.add_argument("--replicas", type=_positive_int, default=4,
                    help="independent replicas (own starts and seeds), in lockstep with batched evaluations; Tg "
                         "as mean ± standard error over them (default 4)")
    qu.add_argument("--first-replica", type=_non_negative_int, default=0,
                    help="index of the first of these replicas (default 0): with --replicas 4 --first-replica 4, "
                         "replicas 4-7 run with the starts and seeds they would have in one ensemble of 8, beside "
                         "those already in OUTPUT_DIR, and the results cover every finished replica there")
    qu.add_argument("--output-dir", default="quench", help="output folder (default ./quench)")
    qu.add_argument("--overwrite", action="store_true",
                    help="start afresh where the folder holds a run (deletes its files); without it the run resumes")
    _model_options(qu)
    qu.set_defaults(func=cmd_quench)


def _analysis_parsers(sub) -> None:
    rd = sub.add_parser("rdf", help="radial distribution functions of a trajectory")
    rd.add_argument("trajectory", help="trajectory or structure file (ase.io.read)")
    rd.add_argument("--r-max", type=_positive_float, default=10.0, help="Å (default 10)")
    rd.add_argument("--nbins", type=_positive_int, default=200)
    rd.add_argument("--index", default=":", help="frames to use, ase.io.read syntax (default ':')")
    rd.add_argument("--plot", default="rdf.png", help="PNG of g(r) ('' for none)")
    rd.add_argument("--csv", help="write r, total and partial g(r)")
    rd.add_argument("--sq-plot", help="PNG of S(q)")
    rd.add_argument("--quiet", action="store_true", help="no progress bar")
    rd.set_defaults(func=cmd_rdf)
    vo = sub.add_parser("voronoi", help="Voronoi polyhedra of a trajectory: the most frequent, icosahedral order")
    vo.add_argument("trajectory", help="trajectory or structure file (ase.io.read), periodic")
    vo.add_argument("--index", default=":", help="frames to use, ase.io.read syntax (default ':')")
    vo.add_argument("--area-threshold", type=_finite_float, default=0.01,
                    help="faces below this fraction of their cell's surface are not counted (default 0.01)")
    vo.add_argument("--edge-threshold", type=_finite_float, default=0.1,
                    help="edges shorter than this (Å) are not counted (default 0.1)")
    vo.add_argument("--backend", choices=("pyscal3", "ovito"), default="pyscal3")
    vo.add_argument("--radii", type=_radii, help="radical tessellation (--backend ovito): Cu=1.28,Zr=1.60 (Å)")
    vo.add_argument("--top", type=_positive_int, default=5, help="polyhedra listed per species (default 5)")
    vo.add_argument("--plot", default="voronoi.png", help="PNG: icosahedral fraction per frame, leading polyhedra")
    vo.add_argument("--quiet", action="store_true", help="no progress bar")
    vo.set_defaults(func=cmd_voronoi)
    ph = sub.add_parser("phonons", help="B2 CuZr phonons, model vs the EAM reference")
    ph.add_argument("--supercell", type=_positive_int, default=4, help="n for an n x n x n supercell (default 4)")
    ph.add_argument("--displacement", type=_positive_float, default=0.01, help="Å (default 0.01)")
    ph.add_argument("--output", default="phonons.png", help="plot (default phonons.png)")
    ph.add_argument("--no-reference", action="store_true", help="skip the EAM reference")
    _model_options(ph, seed=False)
    ph.set_defaults(func=cmd_phonons)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="equicalc", description="Equivariant interatomic potentials for ASE.")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parsers(sub)
    _md_parsers(sub)
    _analysis_parsers(sub)
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit status: 0 done, 2 a usage error (named), 1 a run that failed."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed the usage error (or the help)
        return int(exc.code or 0)
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
