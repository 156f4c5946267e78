"""Validate the shipped Cu–Zr model against its reference, the Mendelev EAM, on the same protocols.

    python data/cuzr/compare.py                      # everything, writes data/cuzr/validation/
    python data/cuzr/compare.py --only errors b2 nve  # a subset

Measures (model and EAM side by side where both apply):

* ``errors``: test-split MAE/RMSE of energy, forces and stress (model only);
* ``pressure_bias``: the model's mean pressure offset from the EAM on the held-out liquids and glasses,
  per Cu fraction and, for Cu64Zr36, per temperature band, and the held-out glasses relaxed at zero
  pressure with each calculator (their volume difference: how the model's density differs);
* ``b2``: B2 CuZr lattice constant (energy minimum, Å), phonons (overlaid plot; frequencies
  at Γ, X, M, R) and elastic constants C11, C12, C44 (GPa), each calculator at its own lattice
  constant and again at the EAM's;
* ``quench``: melt-quench ensembles of Cu64Zr36 at 0 bar (same starts, seeds, rate and fits;
  ``--replicas``, 4 by default): Tg from V(T) and H(T) (mean ± standard error over the
  replicas), 300 K glass volume and energy per atom, RDF first peaks (0.02 Å bins) and the
  fraction of Cu-centred full icosahedra; a killed run resumes;
* ``tg``: Tg alone from a larger ensemble of the same quench (``--tg-replicas``, 16 by default): the
  replicas that have not finished run in batches of ``--batch`` (replica k as it would run in one
  ensemble, so ``quench``'s replicas 0–3 count and the ensemble grows across runs; ``--tg-start``
  leaves the replicas before it to another process), then Tg over every finished replica, each alone
  and from their mean curve (plot: ``validation/quench_<side>/tg_ensemble.png``), and the difference
  of the two sides' mean V(T) and H(T) per temperature window (``validation/tg_difference.png``);
* ``short_range``: isolated atoms and dimers 1–3 Å, and whether each pair's wall rises monotonically
  below 1.8 Å;
* ``nve``: energy drift of a 500-atom Cu64Zr36 liquid at 1500 K in NVE (meV/atom/ps);
* ``architectures``: NequIP against Allegro at the reference's 7.6 Å, the shipped
  ``cuzr`` and ``cuzr-allegro`` (``ship.py``), trained on the same data: errors on the condensed test
  frames, parameters, training cost summed over every stage (from each run's
  ``metrics.csv``) and ASE MD time per step at 500 and 2000 atoms.

Results go to ``validation/results.json`` and plots next to it; ``--markdown``
prints the table for ``data/cuzr/README.md``. Needs ``pip install -e ".[reference]"``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
STEPS = ("errors", "pressure_bias", "b2", "quench", "tg", "nve", "short_range", "architectures")
# the melt: 2200 K as in the reference data (the model's liquid is stable there at zero pressure
# since the data hold expanded liquids, see README.md); fits over the liquid and the glass branch
T_MELT = 2200.0
LIQUID_FIT = (1200.0, 1800.0)
# the side-by-side quench (the cooling rate is an option): melt, ramp, hold at 300 K
QUENCH = dict(t_melt=T_MELT, t_final=300.0, melt_time=4.0, hold_time=4.0, checkpoint_interval=100)
# each architecture's shipped model and its training runs, stage by stage (the configs of the same names say
# why each came): the training cost is summed over all of them
ARCHITECTURES = {
    "NequIP": ("cuzr", [HERE / f"full_cutoff{stage}" for stage in
                        ("", "_sparse", "_wide", "_long", "_forces", "_final", "_lattice",
                         "_pinned")]),
    "Allegro": ("cuzr-allegro", [HERE / f"allegro_full_cutoff{stage}" for stage in
                                 ("", "_forces", "_forces_slow", "_forces_b2", "_final", "_zbl")]),
}


def test_errors(model_path, plot_name: str = "parity_test.png", condensed_only: bool = False) -> dict:
    """Test-split errors of a model (``condensed_only``: its condensed frames, see ``ship.py``), with a parity plot."""
    from ship import test_errors as errors

    from equicalc import load_model
    from equicalc.models import model_path as resolve

    return errors(load_model(resolve(model_path)), condensed_only, plot=HERE / "validation" / plot_name)


# the held-out liquids and glasses of ``pressure_bias``, and its temperature bands for Cu64Zr36 (K)
AMORPHOUS_TYPES = ("liquid", "liquid_composition", "quench", "glass")
T_BANDS = ((0, 750), (800, 1100), (1150, 1500), (1550, 2500))


def held_out(config_types) -> list:
    """The labelled frames (``read_frames``) of the validation and test splits, the frames no model was fitted
    on, whose ``config_type`` is one of ``config_types``."""
    from equicalc.data import read_frames

    return [f for split in ("val", "test") for f in read_frames(HERE / f"{split}.extxyz.gz")
            if f.atoms.info.get("config_type") in config_types]


def pressure_bias(model_path) -> dict:
    """Model − EAM pressure (meV/Å³) on the liquids and glasses of the validation and test splits (frames the
    model was not fitted on): mean ± standard error per Cu fraction, and for Cu64Zr36 per temperature band.
    A mean offset dP makes the model's volume at zero pressure larger by about dP/B (1 meV/Å³ = 0.16 GPa;
    B near 100 GPa), as far as the model's own trajectories visit structures like these (the EAM's)."""
    from equicalc import load_model
    from equicalc.evaluate import predict_frames
    from equicalc.models import model_path as resolve

    frames = held_out(AMORPHOUS_TYPES)
    arrays = predict_frames(load_model(resolve(model_path)), frames, batch_size=16)
    trace = arrays["stress_pred"].reshape(-1, 9)[:, ::4] - arrays["stress_ref"].reshape(-1, 9)[:, ::4]
    assert len(trace) == len(frames), "every liquid and glass frame has a stress"
    dp = -1e3 * trace.mean(axis=1)
    x_cu = np.array([round(float(f.atoms.info["x_cu"]), 2) for f in frames])
    temperature = np.array([float(f.atoms.info["temperature"]) for f in frames])

    def stats(mask) -> dict:
        return {"frames": int(mask.sum()), "mean": float(dp[mask].mean()),
                "error": float(dp[mask].std(ddof=1) / np.sqrt(mask.sum()))}

    return {"unit": "meV/Å³", "frames": len(frames),
            "by_x_cu": {f"{x:.2f}": stats(x_cu == x) for x in sorted(set(x_cu))},
            "cu64_by_T_K": {f"{lo}–{hi}": stats((x_cu == 0.64) & (temperature >= lo) & (temperature <= hi))
                            for lo, hi in T_BANDS}}


def relaxed_glass_volumes(calcs: dict, t_max: float = 300.0) -> dict:
    """The held-out glasses up to ``t_max`` (K; validation and test splits) relaxed at zero pressure and 0 K,
    atoms and an isotropically scaled cell, with each calculator: model − EAM volume (%) per Cu fraction, each
    frame's and their mean. The direct check of ``pressure_bias``'s dP/B."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    frames = [f.atoms for f in held_out(("glass", "quench")) if f.atoms.info["temperature"] <= t_max]
    out = {}
    for atoms in frames:
        volumes = {}
        for name, calc in calcs.items():
            relaxed = atoms.copy()
            relaxed.calc = calc
            if not FIRE(FrechetCellFilter(relaxed, hydrostatic_strain=True), logfile=None).run(fmax=0.005,
                                                                                              steps=1000):
                raise RuntimeError(f"relaxed_glass_volumes: {name} left a {atoms.get_chemical_formula()} glass "
                                   "unrelaxed after 1000 FIRE steps")
            volumes[name] = relaxed.get_volume()
        out.setdefault(f"{atoms.info['x_cu']:.2f}", []).append(100 * (volumes["model"] / volumes["EAM"] - 1))
    return {x: {"per_frame_pct": v, "mean_pct": float(np.mean(v))} for x, v in sorted(out.items())}


def md_step_ms(model_path, n_atoms: int, steps: int = 10) -> float:
    """Wall time of one velocity-Verlet step (energy, forces and stress), ms, EquiCalc defaults, float32."""
    from ase.md.velocitydistribution import thermalize_momenta

    from equicalc import EquiCalc
    from equicalc.md import md_step_time
    from equicalc.systems import random_alloy

    atoms = random_alloy(n_atoms, "Cu64Zr36", volume_per_atom=16.3)
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(1))
    return md_step_time(atoms, EquiCalc(model_path), steps=steps)


def architectures() -> dict:
    """The shipped NequIP and Allegro models, trained on the same data: errors, size, training cost, MD speed."""
    from equicalc import load_model
    from equicalc.models import model_path

    out = {}
    for name, (shipped, runs) in ARCHITECTURES.items():
        model = load_model(model_path(shipped))
        out[name] = {"parameters": sum(p.numel() for p in model.parameters()),
                     "hyperparameters": model.spec.hyperparameters(),
                     "test": test_errors(shipped, f"parity_test_{name.lower()}.png", condensed_only=True),
                     **training_cost([run / "metrics.csv" for run in runs]),
                     "md_ms_per_step": {str(n): md_step_ms(shipped, n, steps=10 if n <= 500 else 5)
                                        for n in (500, 2000)}}
    return out


def training_cost(metrics_paths: list) -> dict:
    """Epochs and hours summed over the stages' ``metrics.csv`` files, and structures/s (median of the last 10
    epochs of the last stage)."""
    import csv

    stages = []
    for path in metrics_paths:
        with open(path) as fh:
            stages.append(list(csv.DictReader(fh)))
    rows = [row for stage in stages for row in stage]
    return {"epochs": len(rows), "training_hours": sum(float(r["time_s"]) for r in rows) / 3600,
            "structures_per_s": float(np.median([float(r["structures_per_s"]) for r in stages[-1][-10:]]))}


# high-symmetry points of the simple-cubic B2 cell (reduced coordinates of the primitive cell)
B2_POINTS = {"Γ": (0.0, 0.0, 0.0), "X": (0.0, 0.5, 0.0), "M": (0.5, 0.5, 0.0), "R": (0.5, 0.5, 0.5)}


def b2_measures(atoms, calc) -> tuple:
    """Phonons of B2 ``atoms`` (4x4x4 supercell) and its cubic elastic constants under ``calc``: the phonopy
    object and a dict of the frequencies at Γ, X, M and R (THz, sorted) and C11, C12, C44, B (GPa)."""
    from equicalc.analysis import phonons
    from equicalc.analysis.elastic import cubic_elastic_constants

    ph = phonons(atoms, calc, supercell=(4, 4, 4))
    frequencies = ph.run_qpoints(list(B2_POINTS.values())).frequencies  # THz, a row per point
    points = {label: sorted(map(float, row)) for label, row in zip(B2_POINTS, frequencies)}
    return ph, {"frequencies_THz": points, "elastic_GPa": cubic_elastic_constants(atoms, calc)}


def b2(calcs: dict) -> dict:
    """B2 CuZr under each calculator at its own lattice constant, and at the EAM's (``at_reference_a``). B2 is so
    anharmonic near this EAM's minimum that the model's 0.1 % offset in the lattice constant moves its phonons at X
    and R by 0.1 THz and its C11 by 10 GPa; the second comparison separates the force constants from that offset."""
    from equicalc.analysis import frequency_range, plot_phonons
    from equicalc.systems import b2_cuzr, relaxed_b2

    out, results = {}, {}
    relaxed = {name: relaxed_b2(calc) for name, calc in calcs.items()}
    a_ref = float(relaxed["EAM"].cell[0, 0])
    for name, calc in calcs.items():
        atoms = relaxed[name]
        ph, measures = b2_measures(atoms, calc)
        fmin, fmax = frequency_range(ph)
        at_reference_a = measures if name == "EAM" else b2_measures(b2_cuzr(a_ref), calc)[1]
        out[name] = {"a": float(atoms.cell[0, 0]), "min_frequency_THz": fmin, "max_frequency_THz": fmax, **measures,
                     "at_reference_a": {"a": a_ref, **at_reference_a}}
        results[name] = ph
    plot_phonons(results, HERE / "validation" / "phonons_b2.png", title="B2 CuZr")
    return out


def quench_both(calcs: dict, n_atoms: int, rate: float, seed: int, replicas: int, overwrite: bool) -> dict:
    """The same ensemble quench (starts, seeds, rate, fits) with each calculator: Tg, the glass, its structure."""
    from equicalc.analysis import quench, report

    out = {}
    for name, calc in calcs.items():
        folder = quench_folder(name)
        res = quench(quench_starts(n_atoms, seed, range(replicas)), calc, replicas=replicas, cooling_rate=rate,
                     directory=folder, seed=seed, trajectory_interval=100, overwrite=overwrite, **QUENCH)
        summary = res.summary(liquid_range=LIQUID_FIT, glass_range=(300, 700), rdf_bins=400)  # 0.02 Å bins
        report(res, summary, folder / "quench.png", liquid_range=LIQUID_FIT, glass_range=(300, 700))
        g = summary.pop("rdf")
        summary.pop("fits")
        out[name] = summary | {"rdf": {"r": g.r.tolist(), "total": g.total.tolist()},
                               "max_temperature_K": float(max(r.data["temperature_K"].max() for r in res.replicas))}
    return out


def quench_folder(name: str) -> Path:
    """Where the side-by-side quench of calculator ``name`` ("model", "EAM") keeps its replicas."""
    return HERE / "validation" / f"quench_{name.split()[0].lower()}"


def quench_starts(n_atoms: int, seed: int, indices) -> list:
    """The random Cu64Zr36 starts of the replicas ``indices`` (replica k's from seed + k)."""
    from equicalc.systems import random_alloy

    return [random_alloy(n_atoms, "Cu64Zr36", volume_per_atom=17.5, seed=seed + k) for k in indices]


def contiguous_batches(indices: list, size: int) -> list:
    """``indices`` (sorted) cut into runs of consecutive numbers, at most ``size`` long."""
    batches = []
    for k in indices:
        if batches and k == batches[-1][-1] + 1 and len(batches[-1]) < size:
            batches[-1].append(k)
        else:
            batches.append([k])
    return batches


def tg_ensemble(calcs: dict, n_atoms: int, rate: float, seed: int, start: int, stop: int, batch: int) -> dict:
    """Tg from V(T) and H(T) over every finished replica of ``quench_both``'s quench, after running those of
    ``start``..``stop - 1`` that have not finished (no trajectories: Tg needs the rows only)."""
    from equicalc.analysis import EnsembleQuenchResult, quench

    out = {}
    for name, calc in calcs.items():
        folder = quench_folder(name)
        done = set(EnsembleQuenchResult.load(folder, finished=True).indices)
        for ks in contiguous_batches([k for k in range(start, stop) if k not in done], batch):
            print(f"tg: {name} replicas {ks[0]}–{ks[-1]}", flush=True)
            quench(quench_starts(n_atoms, seed, ks), calc, replicas=len(ks), first_replica=ks[0], cooling_rate=rate,
                   directory=folder, seed=seed, trajectory_interval=0, **QUENCH)
        ensemble = EnsembleQuenchResult.load(folder, finished=True)
        ensemble.plot(folder / "tg_ensemble.png", liquid_range=LIQUID_FIT, glass_range=(300, 700), method="windows")
        out[name] = tg_fits(ensemble) | {"replicas": len(ensemble.replicas), "replica_indices": ensemble.indices}
    out["difference"] = curve_difference(HERE / "validation" / "tg_difference.png")
    return out


def curve_difference(plot_path=None) -> dict:
    """Model − EAM along the cooling curve: the two ensembles' mean V(T) (Å^3/atom) and H(T) (meV/atom) per
    temperature window, each difference with its combined standard error, plotted to ``plot_path``. Tg is where
    two fitted branches cross, so it magnifies small offsets between them: this shows where the curves differ."""
    from equicalc.analysis import EnsembleQuenchResult
    from equicalc.plotting import new_figure, save_figure

    sides = [EnsembleQuenchResult.load(quench_folder(name), finished=True) for name in ("model", "EAM")]
    out = {}
    fig, axes = new_figure(2, size=(10, 4))
    for ax, (quantity, unit, scale) in zip(axes, (("volume", "Å³/atom", 1.0), ("enthalpy", "meV/atom", 1e3))):
        model, eam = (e.mean_windows(quantity) for e in sides)
        diff, error = scale * (model["mean"] - eam["mean"]), scale * np.hypot(model["error"], eam["error"])
        out |= {"T_K": eam["T"].tolist(), quantity: {"difference": diff.tolist(), "error": error.tolist(), "unit": unit}}
        ax.errorbar(eam["T"], diff, error, fmt="o", ms=3, capsize=2)
        ax.axhline(0.0, color="k", lw=0.8)
        for (lo, hi), color in ((LIQUID_FIT, "C3"), ((300, 700), "C2")):
            ax.axvspan(lo, hi, color=color, alpha=0.08)
        ax.set_xlabel("T (K)")
        ax.set_ylabel(f"model − EAM, {quantity} ({unit})")
    fig.suptitle(f"mean cooling curves, {len(sides[0].replicas)} replicas of the model against "
                 f"{len(sides[1].replicas)} of the EAM\n(± one standard error; shaded: the Tg fit windows)",
                 fontsize=10)
    if plot_path is not None:
        save_figure(fig, plot_path)
    return out


def tg_fits(ensemble) -> dict:
    """Tg (K) of an ``EnsembleQuenchResult`` from V(T) and H(T), by window fits (the ``quench`` step's ranges)
    and whole-curve fits, each replica alone (mean, standard error and each replica's), and by window fits of
    the replicas' mean curve (``_pooled``: jackknife error, with the two branches as ``liquid_fit`` and
    ``glass_fit``: slope per K and intercept, in Å^3/atom or eV/atom)."""
    fits = {}
    for quantity in ("volume", "enthalpy"):
        for method, suffix, pooled in (("windows", "", False), ("hyperbola", "_hyperbola", False),
                                       ("windows", "_pooled", True)):
            ranges = {"liquid_range": LIQUID_FIT, "glass_range": (300, 700)} if method == "windows" else {}
            tg = ensemble.glass_transition(quantity, method, pooled=pooled, **ranges)
            fits[f"tg_{quantity}{suffix}"] = {"tg_K": tg.tg, "error_K": tg.error, "per_replica_K": list(tg.per_replica)}
            if pooled:
                fits[f"tg_{quantity}{suffix}"] |= {"liquid_fit": list(tg.liquid_fit), "glass_fit": list(tg.glass_fit)}
    return fits


def nve_drift(calc, n_atoms: int = 500, ps: float = 4.0, seed: int = 0) -> dict:
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    from equicalc.systems import random_alloy

    atoms = random_alloy(n_atoms, "Cu64Zr36", volume_per_atom=17.0, seed=seed)
    atoms.calc = calc
    thermalize_momenta(atoms, temperature_K=1500, rng=np.random.default_rng(seed))
    Langevin(atoms, 2 * units.fs, temperature_K=1500, friction=0.02 / units.fs,
             rng=np.random.default_rng(seed + 1)).run(500)
    dyn = VelocityVerlet(atoms, 1 * units.fs)
    times, energies, temps = [], [], []

    def record():
        times.append(dyn.get_time() / (1000 * units.fs))
        energies.append(atoms.get_total_energy() / len(atoms))
        temps.append(atoms.get_temperature())

    dyn.attach(record, interval=10)
    dyn.run(int(ps * 1000))
    slope = np.polyfit(times, energies, 1)[0]
    return {"n_atoms": n_atoms, "timestep_fs": 1.0, "ps": ps, "mean_temperature_K": float(np.mean(temps)),
            "drift_meV_per_atom_per_ps": float(slope * 1e3),
            "fluctuation_meV_per_atom": float(np.std(energies) * 1e3)}


def isolated_energy(calc, symbol: str) -> float:
    """Energy (eV) of one atom alone in a 20 Å periodic box (more than twice the 7.6 Å cutoff)."""
    from ase import Atoms

    atom = Atoms(symbol, cell=[20.0] * 3, pbc=True)
    atom.calc = calc
    return float(atom.get_potential_energy())


def dimer_energies(calc, pair: str, distances) -> list:
    """Energies (eV) of the dimer ``pair`` ("CuZr", ...) at each of ``distances`` (Å), alone in a 20 Å box."""
    from ase import Atoms

    energies = []
    for d in distances:
        dimer = Atoms(pair, positions=[[5, 5, 5], [5 + d, 5, 5]], cell=[20.0] * 3, pbc=True)
        dimer.calc = calc
        energies.append(float(dimer.get_potential_energy()))
    return energies


def short_range(calcs: dict) -> dict:
    """Isolated atoms (eV; the EAM's are 0) and dimers from 1.0 to 3.0 Å (eV): is each pair's energy monotonic
    below 1.8 Å (a repulsive wall), and by how much does it differ from the EAM above 1.5 Å?"""
    distances = np.round(np.arange(1.0, 3.0001, 0.05), 3)
    out = {name: {"isolated_eV": {}, "dimer_eV": {}, "wall_monotonic_below_1.8": {}} for name in calcs}
    for name, calc in calcs.items():
        for symbol in ("Cu", "Zr"):
            out[name]["isolated_eV"][symbol] = isolated_energy(calc, symbol)
        for pair in ("CuCu", "CuZr", "ZrZr"):
            energies = dimer_energies(calc, pair, distances)
            below = np.array(energies)[distances <= 1.8]
            out[name]["dimer_eV"][pair] = energies
            out[name]["wall_monotonic_below_1.8"][pair] = bool(np.all(np.diff(below) < 0))
    out["distances_A"] = distances.tolist()
    return out


def markdown_architectures(results: dict) -> str:
    """The NequIP vs Allegro table for data/cuzr/README.md."""
    a = results.get("architectures", {})
    names = list(a)
    rows = ["| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]

    def row(label, fn):
        rows.append(f"| {label} | " + " | ".join(fn(a[n]) for n in names) + " |")

    for key, label in (("energy", "energy (meV/atom)"), ("forces", "forces (meV/Å)"), ("stress", "stress (meV/Å³)")):
        row(f"test MAE / RMSE, {label}", lambda r, k=key: f"{r['test'][k + '_mae']:.2f} / {r['test'][k + '_rmse']:.2f}")
    row("parameters", lambda r: f"{r['parameters']:,}".replace(",", " "))
    row("training: epochs, hours (2 CPU cores)", lambda r: f"{r['epochs']}, {r['training_hours']:.1f}")
    row("training: structures/s (median of the last 10 epochs)", lambda r: f"{r['structures_per_s']:.1f}")
    for n in ("500", "2000"):
        row(f"ASE MD, ms/step, {n} atoms", lambda r, n=n: f"{r['md_ms_per_step'][n]:.0f}")
    return "\n".join(rows)


def markdown_pressure_bias(results: dict) -> str:
    """The model − EAM pressure table of ``pressure_bias`` for data/cuzr/README.md."""
    b = results.get("pressure_bias", {})
    rows = ["| held-out liquids and glasses | frames | model − EAM pressure (meV/Å³) |", "|---|---:|---:|"]
    for label, group in [(f"Cu fraction {x}", v) for x, v in b.get("by_x_cu", {}).items()] + \
                        [(f"Cu64Zr36, {band} K", v) for band, v in b.get("cu64_by_T_K", {}).items()]:
        rows.append(f"| {label} | {group['frames']} | {group['mean']:+.2f} ± {group['error']:.2f} |")
    rows += ["", "| held-out glasses ≤ 300 K, relaxed at 0 bar and 0 K | frames | model − EAM volume (%) |",
             "|---|---:|---:|"]
    for x, v in b.get("relaxed_glass_volume", {}).items():
        rows.append(f"| Cu fraction {x} | {len(v['per_frame_pct'])} | {v['mean_pct']:+.2f} |")
    return "\n".join(rows)


def tg_cell(fit: dict, replicas: int = 0) -> str:
    """Tg ± standard error (K) over the replicas that gave one, for the table, or "none"."""
    if "tg_K" not in fit:
        return "none"
    used = len(fit.get("per_replica_K", []))
    of = f"{used} of {replicas}" if replicas > used else f"{used}"
    return f"{fit['tg_K']:.0f} ± {fit['error_K']:.0f}" + (f" ({of} replicas)" if used else "")


def b2_rows(row, b: dict, where: str = "") -> None:
    """The table's rows of B2 phonons and elastic constants from ``b2()``'s results (or their
    ``at_reference_a`` parts), ``where`` appended to each label."""
    for label in B2_POINTS:
        row(f"B2 CuZr phonons at {label}{where} (THz)",
            lambda n, p=label: " / ".join(f"{f:.2f}" for f in b[n]["frequencies_THz"][p]))
    row(f"B2 CuZr C11 / C12 / C44{where} (GPa)", lambda n: " / ".join(f"{b[n]['elastic_GPa'][k]:.0f}"
                                                                      for k in ("C11", "C12", "C44")))


def markdown_tables(results: dict) -> str:
    """Every README table of ``results``: side by side, pressure offsets, architectures."""
    return "\n\n".join(table(results) for table in (markdown, markdown_pressure_bias, markdown_architectures))


def markdown(results: dict) -> str:
    """The side-by-side table for data/cuzr/README.md."""
    q = results.get("quench", {})
    b = results.get("b2", {})
    names = sorted(q or b, key=lambda n: n != "model")  # model first, then the reference
    rows = ["| quantity | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]

    def row(label, fn):
        vals = []
        for n in names:
            try:
                vals.append(fn(n))
            except KeyError:
                vals.append("–")
        rows.append(f"| {label} | " + " | ".join(vals) + " |")

    def tg(n, key):
        return tg_cell(q[n][key], q[n].get("replicas", 0))

    def with_error(n, key, digits):
        return f"{q[n][key]:.{digits}f} ± {q[n][key + '_error']:.{digits}f}"

    row("Tg from V(T), whole-curve fits (K)", lambda n: tg(n, "tg_volume_hyperbola"))
    row("Tg from H(T), whole-curve fits (K)", lambda n: tg(n, "tg_enthalpy_hyperbola"))
    row("Tg from V(T), window fits (K)", lambda n: tg(n, "tg_volume"))
    row("Tg from H(T), window fits (K)", lambda n: tg(n, "tg_enthalpy"))
    t = results.get("tg", {})
    if t:
        for label, key in (("V(T), window fits", "tg_volume"), ("H(T), window fits", "tg_enthalpy"),
                           ("V(T), whole-curve fits", "tg_volume_hyperbola"),
                           ("H(T), whole-curve fits", "tg_enthalpy_hyperbola")):
            row(f"Tg from {label}, larger ensemble (K)", lambda n, k=key: tg_cell(t[n][k], t[n]["replicas"]))
        for label, key in (("V(T)", "tg_volume_pooled"), ("H(T)", "tg_enthalpy_pooled")):
            row(f"Tg from the mean {label} of the larger ensemble, window fits (K)",
                lambda n, k=key: f"{t[n][k]['tg_K']:.0f} ± {t[n][k]['error_K']:.0f} ({t[n]['replicas']} replicas)")
    row("300 K glass: E_pot (eV/atom)", lambda n: with_error(n, "glass_epot_per_atom", 4))
    row("300 K glass: volume (Å³/atom)", lambda n: with_error(n, "glass_volume_per_atom", 3))
    for pair in ("Cu-Cu", "Cu-Zr", "Zr-Zr", "total"):
        row(f"300 K glass: first RDF peak {pair} (Å)", lambda n, p=pair: f"{q[n]['rdf_first_peaks_A'][p]:.2f}")
    row("300 K glass: Cu-centred ⟨0,0,12,0⟩", lambda n: f"{q[n]['glass_icosahedral_fraction']['Cu']:.3f} ± "
                                                       f"{q[n]['glass_icosahedral_fraction_error']['Cu']:.3f}")
    row("B2 CuZr lattice constant (Å)", lambda n: f"{b[n]['a']:.4f}")
    b2_rows(row, b)
    at_reference_a = {n: v["at_reference_a"] for n, v in b.items() if "at_reference_a" in v}
    if at_reference_a:
        b2_rows(row, at_reference_a, " at the EAM's a")
    s = results.get("short_range", {})
    row("isolated atom Cu / Zr (eV)", lambda n: " / ".join(f"{s[n]['isolated_eV'][e]:.3f}" for e in ("Cu", "Zr")))
    row("dimer energy rises below 1.8 Å: Cu–Cu / Cu–Zr / Zr–Zr",
        lambda n: " / ".join("yes" if s[n]["wall_monotonic_below_1.8"][p] else "no" for p in ("CuCu", "CuZr", "ZrZr")))
    return "\n".join(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="cuzr", help="model file or shipped model name (default cuzr)")
    parser.add_argument("--only", nargs="+", choices=STEPS, default=list(STEPS))
    parser.add_argument("--atoms", type=int, default=250, help="atoms in the quench (default 250)")
    parser.add_argument("--rate", type=float, default=100.0, help="cooling rate of the quench, K/ps (default 100)")
    parser.add_argument("--replicas", type=int, default=4, help="replicas of the quench per calculator (default 4)")
    parser.add_argument("--tg-replicas", type=int, default=16,
                        help="the tg step's ensemble per calculator: replicas 0 to N - 1 (default 16)")
    parser.add_argument("--tg-start", type=int, default=0,
                        help="the tg step runs the missing replicas from this one to N - 1 (default 0; the others count when done)")
    parser.add_argument("--batch", type=int, default=4, help="replicas run together in the tg step (default 4)")
    parser.add_argument("--overwrite", action="store_true", help="start the quenches afresh (else they resume)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calculators", nargs="+", choices=("model", "EAM"), default=["model", "EAM"],
                        help="which side(s) of the quench to run; the other side's saved results are kept")
    parser.add_argument("--markdown", action="store_true", help="print the README tables from saved results")
    args = parser.parse_args(argv)
    folder = HERE / "validation"
    folder.mkdir(exist_ok=True)
    results_path = folder / "results.json"

    def saved() -> dict:  # re-read before each write: several compare.py runs may share the file
        return json.loads(results_path.read_text()) if results_path.exists() else {}

    if args.markdown:
        results = saved()
        print(markdown_tables(results))
        return
    from equicalc import EquiCalc
    from equicalc.reference import eam_calculator

    calcs = {"model": EquiCalc(args.model), "EAM": eam_calculator()}
    quench_calcs = {name: calcs[name] for name in args.calculators}
    for step in args.only:
        t0 = time.time()
        new = {}
        if step == "errors":
            new["errors"] = test_errors(args.model)
        elif step == "b2":
            new["b2"] = b2(calcs)
        elif step == "quench":
            new["quench"] = quench_both(quench_calcs, args.atoms, args.rate, args.seed, args.replicas, args.overwrite)
            new["quench_protocol"] = {"atoms": args.atoms, "replicas": args.replicas, "rate_K_per_ps": args.rate,
                                      "t_melt_K": T_MELT,
                                      "t_final_K": 300.0, "seed": args.seed, "timestep_fs": 2.0,
                                      "liquid_fit_K": list(LIQUID_FIT), "glass_fit_K": [300, 700]}
        elif step == "tg":
            new["tg"] = tg_ensemble(quench_calcs, args.atoms, args.rate, args.seed, args.tg_start, args.tg_replicas,
                                    args.batch)
        elif step == "nve":
            new["nve"] = nve_drift(calcs["model"])
        elif step == "pressure_bias":
            new["pressure_bias"] = pressure_bias(args.model) | {"relaxed_glass_volume": relaxed_glass_volumes(calcs)}
        elif step == "short_range":
            new["short_range"] = short_range(calcs)
        elif step == "architectures":
            new["architectures"] = architectures()
        results = saved()
        for key in ("quench", "tg"):  # keep the other side's saved quench
            if key in new:
                new[key] = results.get(key, {}) | new[key]
        results_path.write_text(json.dumps(results | new, indent=1))
        print(f"{step}: done in {time.time() - t0:.0f} s", flush=True)
    print(markdown_tables(saved()))


if __name__ == "__main__":
    main()
