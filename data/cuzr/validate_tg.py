"""The ASE melt-quench against LAMMPS's own: the same protocol on the Mendelev EAM, the same Tg fits.

    python data/cuzr/validate_tg.py                # -> validation/tg_engines.json, tg_engines.png
    python data/cuzr/validate_tg.py --replicas 4 --atoms 250 --rate 200   # a quicker check

Both engines quench the same starting structures (random Cu64Zr36 alloys, one per
replica): equicalc's ``quench`` (ASE's LangevinBAOAB NPT, the EAM through ASE's
LAMMPSlib, the replicas in lockstep) and LAMMPS itself (``fix npt``: Nosé–Hoover
thermostat and barostat with the same time constants, 100 fs and 1 ps, the target
temperature ramped over the same steps). Both record the same rows every 10 steps;
the same ensemble fits (mean ± standard error over the replicas) then give Tg from
V(T) and H(T). Agreement within the errors shows that the ASE protocol measures
what LAMMPS measures. Needs ``pip install -e ".[reference]"``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FITS = {"windows": dict(liquid_range=(1200.0, 1800.0), glass_range=(300.0, 700.0)), "hyperbola": {}}


def lammps_quench(start, protocol: dict, folder: Path, sample_interval: int = 10):
    """One replica quenched by LAMMPS (``fix npt``) under ``protocol``; returns its ``QuenchResult``."""
    from equicalc.analysis.quench import QuenchResult, protocol_temperature
    from equicalc.reference import EAMRun

    p = protocol
    run = EAMRun(start, p["seed"])
    run.lmp.command("thermo_style custom step temp pe ke vol press")
    run.velocities(p["t_melt"])
    n_melt = int(round(p["melt_time"] * 1000.0 / p["timestep_fs"]))
    n_ramp = int(round((p["t_melt"] - p["t_final"]) / p["cooling_rate"] * 1000.0 / p["timestep_fs"]))
    rows = []
    for stage, t0, t1, steps in (("melt", p["t_melt"], p["t_melt"], n_melt), ("cool", p["t_melt"], p["t_final"], n_ramp),
                                 ("hold", p["t_final"], p["t_final"], p["n_steps"] - n_melt - n_ramp)):
        if steps % sample_interval:
            raise ValueError(f"the {stage} stage's {steps} steps are not a multiple of {sample_interval}")
        run.ensemble("npt", t0, t1)
        first = len(rows) * sample_interval
        for chunk in range(steps // sample_interval):  # the ramp spans the whole stage (start/stop), not each chunk
            run.lmp.command(f"run {sample_interval} start {first} stop {first + steps} "
                            f"pre {'no' if chunk else 'yes'} post no")
            rows.append(_row(run.lmp, len(rows) * sample_interval + sample_interval, p))
    run.close()
    data = {key: np.array([r[key] for r in rows]) for key in rows[0]}
    data["target_K"] = protocol_temperature(data["time_ps"], p["t_melt"], p["t_final"], p["cooling_rate"],
                                            p["melt_time"])
    t_cool_end = p["melt_time"] + (p["t_melt"] - p["t_final"]) / p["cooling_rate"]
    data["stage"] = np.where(data["time_ps"] <= p["melt_time"], "melt",
                             np.where(data["time_ps"] <= t_cool_end, "cool", "hold"))
    folder.mkdir(parents=True, exist_ok=True)
    keys = list(data)
    np.savetxt(folder / "quench.csv", np.column_stack([data[k].astype(str) for k in keys]), fmt="%s", delimiter=",",
               header=",".join(keys), comments="")
    return QuenchResult(folder, data, protocol)


def _row(lmp, step: int, p: dict) -> dict:
    n = lmp.get_natoms()
    epot, ekin, vol = lmp.get_thermo("pe") / n, lmp.get_thermo("ke") / n, lmp.get_thermo("vol") / n
    return dict(step=step, time_ps=step * p["timestep_fs"] / 1000.0, temperature_K=lmp.get_thermo("temp"),
                volume_per_atom=vol, epot_per_atom=epot, ekin_per_atom=ekin, enthalpy_per_atom=epot + ekin,
                pressure_GPa=lmp.get_thermo("press") * 1e-4)


def tg_table(ensemble) -> dict:
    """Tg (K, standard error, replicas used) from V(T) and H(T) by both fits."""
    out = {}
    for quantity in ("volume", "enthalpy"):
        for method, ranges in FITS.items():
            try:
                tg = ensemble.glass_transition(quantity, method, **ranges)
                out[f"{quantity}_{method}"] = {"tg_K": tg.tg, "error_K": tg.error, "per_replica_K": list(tg.per_replica)}
            except ValueError as exc:
                out[f"{quantity}_{method}"] = {"error": str(exc)}
    return out


def main(argv=None) -> None:
    from equicalc.analysis import EnsembleQuenchResult, quench
    from equicalc.analysis.quench import make_protocol, relaxed_start
    from equicalc.plotting import new_figure, save_figure
    from equicalc.reference import eam_calculator
    from equicalc.systems import random_alloy

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--atoms", type=int, default=500)
    parser.add_argument("--replicas", type=int, default=8)
    parser.add_argument("--rate", type=float, default=100.0, help="K/ps")
    parser.add_argument("--melt-time", type=float, default=5.0, help="ps")
    parser.add_argument("--hold-time", type=float, default=2.0, help="ps")
    parser.add_argument("--out", type=Path, default=HERE / "validation")
    args = parser.parse_args(argv)
    protocol = dict(t_melt=2000.0, t_final=300.0, cooling_rate=args.rate, melt_time=args.melt_time,
                    hold_time=args.hold_time, timestep=2.0, window=50.0, pressure=0.0)
    calc = eam_calculator("lammps")
    # both engines start from the structures quench would relax itself (50 FIRE steps at fixed cell)
    starts = [relaxed_start(random_alloy(args.atoms, "Cu64Zr36", volume_per_atom=17.5, seed=100 + k), calc, 50)
              for k in range(args.replicas)]
    work = args.out / "tg_engines"
    t0 = time.time()
    ase_runs = quench(starts, calc, replicas=args.replicas, directory=work / "ase", seed=100,
                      sample_interval=10, trajectory_interval=0, relax_steps=0, overwrite=True, **protocol)
    t_ase = time.time() - t0
    lammps_runs = []
    for k, start in enumerate(starts):
        p = make_protocol(start, seed=100 + k, relax_steps=0, **protocol)
        lammps_runs.append(lammps_quench(start, p, work / "lammps" / f"replica_{k}"))
    t_lammps = time.time() - t0 - t_ase
    lammps_runs = EnsembleQuenchResult(work / "lammps", lammps_runs)
    results = {"protocol": {**protocol, "atoms": args.atoms, "replicas": args.replicas},
               "ase": tg_table(ase_runs), "lammps": tg_table(lammps_runs),
               "wall_s": {"ase": round(t_ase), "lammps": round(t_lammps)}}
    for name, ens in (("ase", ase_runs), ("lammps", lammps_runs)):
        hold = [r.data["volume_per_atom"][r.data["stage"] == "hold"].mean() for r in ens.replicas]
        results[name]["glass_volume_per_atom"] = [float(np.mean(hold)), float(np.std(hold, ddof=1) / np.sqrt(len(hold)))]
    (args.out / "tg_engines.json").write_text(json.dumps(results, indent=1))
    fig, axes = new_figure(2, 2, size=(10.0, 8.0))
    for row, (name, ens) in enumerate((("ASE (LangevinBAOAB, LAMMPSlib)", ase_runs), ("LAMMPS fix npt", lammps_runs))):
        ens.plot(axes=axes[row], method="hyperbola")
        axes[row, 0].set_ylabel(f"{name}\nV (Å³/atom)")
    save_figure(fig, args.out / "tg_engines.png")
    for key in results["ase"]:
        if key.startswith("glass"):
            continue
        a, b = results["ase"][key], results["lammps"][key]
        line = "  ".join(f"{n} {r['tg_K']:.0f} ± {r['error_K']:.0f} K" if "tg_K" in r else f"{n} none"
                         for n, r in (("ASE", a), ("LAMMPS", b)))
        print(f"{key:20s} {line}")
    print(f"wrote {args.out / 'tg_engines.json'} and tg_engines.png ({t_ase:.0f} s ASE, {t_lammps:.0f} s LAMMPS)")


if __name__ == "__main__":
    main()
