"""Molecular dynamics runs with ASE's integrators, a progress bar and a record of every step.

    summary = run_md(atoms, calc, steps=1000, temperature=1500, ensemble="nvt", trajectory="md.traj")

Units: temperature K, pressure bar, time step fs; the records are per atom
(eV/atom, Å³/atom). Works with any ASE calculator.
"""
from __future__ import annotations

import json
import time
from typing import Optional

import numpy as np

__all__ = ["make_dynamics", "run_md", "run_replicas", "md_step_time", "calculator_fingerprint"]


def make_dynamics(atoms, ensemble: str = "nvt", temperature: float = 300.0, pressure: float = 0.0,
                  timestep: float = 2.0, seed: int = 0, friction: float = 0.01):
    """An ASE integrator for ``atoms``: ``"nvt"`` (Langevin, ``friction`` in 1/fs), ``"npt"`` (isotropic MTK,
    thermostat 100 and barostat 1000 time steps) or ``"nve"`` (velocity Verlet)."""
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.nose_hoover_chain import IsotropicMTKNPT
    from ase.md.verlet import VelocityVerlet

    dt = timestep * units.fs
    if ensemble == "nvt":
        return Langevin(atoms, dt, temperature_K=temperature, friction=friction / units.fs,
                        rng=np.random.default_rng(seed + 1))
    if ensemble == "npt":
        return IsotropicMTKNPT(atoms, dt, temperature_K=temperature, pressure_au=pressure * units.bar,
                               tdamp=100 * dt, pdamp=1000 * dt)
    if ensemble == "nve":
        return VelocityVerlet(atoms, dt)
    raise ValueError(f"ensemble must be 'nvt', 'npt' or 'nve', got {ensemble!r}")


def run_md(atoms, calc, steps: int, temperature: float, ensemble: str = "nvt", pressure: float = 0.0,
           timestep: float = 2.0, seed: int = 0, trajectory: Optional[str] = None, interval: int = 10,
           show_progress: bool = True, record: Optional[dict] = None) -> dict:
    """Thermalise ``atoms`` at ``temperature`` (K) and run ``steps`` MD steps with ``calc``.

    Writes every ``interval``-th frame to ``trajectory`` (if given) and, beside it,
    ``<trajectory>.json``: what made the run (``record``, the settings and the
    calculator's fingerprint) and its averages. Returns the records (``step``,
    ``epot_per_atom``, ``temperature_K``, ``volume_per_atom`` arrays, one per step),
    ``ms_per_step``, the averages of the last fifth of the run and ``record`` (that file).
    """
    from ase.io import Trajectory
    from ase.md.velocitydistribution import thermalize_momenta
    from tqdm.auto import tqdm

    if steps < 0 or interval < 1:
        raise ValueError(f"run_md: steps must be >= 0 and interval >= 1, got {steps} and {interval}")
    if len(atoms) < 2 or not temperature > 0 or not timestep > 0:
        raise ValueError(f"run_md: needs at least 2 atoms, a temperature > 0 K and a time step > 0 fs, got "
                         f"{len(atoms)} atoms, {temperature} K and {timestep} fs")
    atoms.calc = calc
    thermalize_momenta(atoms, temperature_K=temperature, rng=np.random.default_rng(seed))
    dyn = make_dynamics(atoms, ensemble, temperature, pressure, timestep, seed)
    traj = Trajectory(trajectory, "w", atoms) if trajectory else None
    rows = []
    bar = tqdm(total=steps, unit="step", disable=not show_progress)

    def on_step():
        rows.append((dyn.nsteps, atoms.get_potential_energy() / len(atoms), atoms.get_temperature(),
                     atoms.get_volume() / len(atoms)))
        bar.set_postfix(T=f"{rows[-1][2]:.0f} K", Epot=f"{rows[-1][1]:.4f} eV/atom")
        if traj is not None and dyn.nsteps % interval == 0:
            traj.write(atoms)
        if dyn.nsteps > 0:
            bar.update(1)

    dyn.attach(on_step, interval=1)
    t0 = time.perf_counter()
    try:
        dyn.run(steps)
    finally:
        bar.close()
        if traj is not None:
            traj.close()
    elapsed = time.perf_counter() - t0
    step, epot, temp, vol = (np.array(c) for c in zip(*rows))
    tail = slice(-max(len(rows) // 5, 1), None)
    out = {"ms_per_step": elapsed / max(steps, 1) * 1e3, "mean_temperature_K": float(temp[tail].mean()),
           "mean_epot_per_atom": float(epot[tail].mean()), "mean_volume_per_atom": float(vol[tail].mean())}
    if trajectory:
        out["record"] = _write_record(trajectory, dict(record or {}, steps=steps, temperature_K=temperature,
                                                       ensemble=ensemble, pressure_bar=pressure, timestep_fs=timestep,
                                                       seed=seed, interval=interval), calc, out)
    return {"step": step, "epot_per_atom": epot, "temperature_K": temp, "volume_per_atom": vol, **out}


def calculator_fingerprint(calc) -> dict:
    """What identifies ``calc`` for a run's records: its own ``fingerprint()`` (EquiCalc: architecture, dtype and
    a hash of the weights), else its class and parameters."""
    if hasattr(calc, "fingerprint"):
        return calc.fingerprint()
    params = calc.todict() if hasattr(calc, "todict") else {}
    return json.loads(json.dumps({"class": type(calc).__name__, "parameters": params}, default=str))


def run_replicas(structures, calc, steps: int, temperature: float, ensemble: str = "nvt", pressure: float = 0.0,
                 timestep: float = 2.0, seed: int = 0, trajectory: Optional[str] = None, interval: int = 10,
                 show_progress: bool = True, record: Optional[dict] = None) -> list:
    """``run_md`` for each of ``structures`` in lockstep, every step's force calls pooled into one batch
    (``equicalc.ensemble.BatchedCalculators``). Replica ``k`` is seeded with ``seed + k`` and writes
    ``<stem>_<k><suffix>`` when ``trajectory`` is given. Returns one ``run_md`` result per replica."""
    from pathlib import Path

    from .ensemble import BatchedCalculators

    structures = list(structures)
    group = BatchedCalculators(calc, len(structures))

    def task(k):
        path = None
        if trajectory:
            p = Path(trajectory)
            path = str(p.with_name(f"{p.stem}_{k}{p.suffix}")) if len(structures) > 1 else trajectory
        return run_md(structures[k], group[k], steps, temperature, ensemble, pressure, timestep, seed + k, path,
                      interval, show_progress and k == 0, dict(record or {}, replica=k, replicas=len(structures)))

    return group.run([lambda k=k: task(k) for k in range(len(structures))])


def _write_record(trajectory: str, settings: dict, calc, results: dict) -> str:
    """``<trajectory>.json``: the run's settings, calculator fingerprint and averages (written atomically)."""
    from pathlib import Path

    from .files import atomic_write

    path = f"{trajectory}.json"
    text = json.dumps({"settings": settings, "calculator": calculator_fingerprint(calc), "results": results},
                      indent=1, default=str)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return path


def md_step_time(atoms, calc, steps: int = 10, warmup: int = 2, stress: bool = True) -> float:
    """Wall time of one velocity-Verlet step of ``atoms`` with ``calc``, ms (mean over ``steps``).

    ``stress``: ask for the stress every step too, as NPT needs. ``warmup`` steps
    run first (kernel compilation, the first neighbour list) and are not timed.
    ``atoms`` should carry velocities (e.g. ``thermalize_momenta``); it is moved by the run.
    """
    from ase import units
    from ase.md.verlet import VelocityVerlet

    if steps < 1:
        raise ValueError(f"md_step_time: steps must be >= 1, got {steps}")
    atoms.calc = calc
    dyn = VelocityVerlet(atoms, 1.0 * units.fs)
    if stress:
        dyn.attach(atoms.get_stress, interval=1)
    dyn.run(warmup)
    t0 = time.perf_counter()
    dyn.run(steps)
    return (time.perf_counter() - t0) / steps * 1e3
