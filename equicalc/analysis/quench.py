"""Melt-quench protocol and the glass transition temperature from V(T) and H(T).

    res = quench(atoms, calc, t_melt=2000, t_final=300, cooling_rate=100)   # K, K/ps
    tg = res.glass_transition("volume")        # Tg ± error (K), the fit ranges used
    res.plot("quench.png")

The protocol runs as ASE molecular dynamics in the isothermal–isobaric ensemble
(``ase.md.langevinbaoab.LangevinBAOAB``: Langevin thermostat on the atoms,
Langevin–Hoover barostat on an isotropically scaling cell): equilibrate at
``t_melt``, cool linearly at ``cooling_rate``, hold at ``t_final``. Every
``sample_interval`` steps it appends a row (temperature, volume, potential,
kinetic and enthalpy per atom, pressure) to ``quench.csv`` in ``directory``;
frames go to ``quench.traj`` and the MD state to ``state.traj``/``state.json``.
Calling ``quench`` again with the same directory resumes after the last saved
state (a killed run loses at most ``checkpoint_interval`` steps).

Units: temperatures K, rates K/ps, times ps, pressure bar (input) and GPa
(output), volumes Å³/atom, energies eV/atom.
"""
from __future__ import annotations

import csv
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

__all__ = ["quench", "QuenchResult", "GlassTransition", "fit_glass_transition", "protocol_temperature",
           "tg_resolved"]

_FIELDS = ["step", "time_ps", "stage", "target_K", "temperature_K", "volume_per_atom", "epot_per_atom",
           "ekin_per_atom", "enthalpy_per_atom", "pressure_GPa"]
_EV_PER_A3_TO_GPA = 160.21766208


@dataclass
class GlassTransition:
    """Tg from the intersection of straight-line fits to the liquid and glass branches.

    Attributes:
        tg: glass transition temperature, K.
        error: uncertainty of ``tg`` (K): standard deviation over bootstrap resamples of the points.
        liquid_range, glass_range: temperature ranges (K) of the two fits.
        liquid_fit, glass_fit: (slope, intercept) of ``y = slope * T + intercept``.
        quantity: what was fitted.
    """

    tg: float
    error: float
    liquid_range: Tuple[float, float]
    glass_range: Tuple[float, float]
    liquid_fit: Tuple[float, float]
    glass_fit: Tuple[float, float]
    quantity: str = ""

    def resolved(self, t_min: float, t_max: float) -> bool:
        """Whether the fits found a kink (``tg_resolved``)."""
        return tg_resolved(self.tg, self.error, t_min, t_max)

    def __str__(self) -> str:
        return (f"Tg = {self.tg:.0f} ± {self.error:.0f} K from {self.quantity or 'y'}(T) "
                f"(liquid fit {self.liquid_range[0]:.0f}–{self.liquid_range[1]:.0f} K, "
                f"glass fit {self.glass_range[0]:.0f}–{self.glass_range[1]:.0f} K)")


def tg_resolved(tg: float, error: float, t_min: float, t_max: float) -> bool:
    """Whether a Tg fit found a kink: ``tg`` lies inside (t_min, t_max) K and its ``error`` (K) is at most half
    of it. Where the two branches have nearly the same slope the crossing is ill-conditioned and it is not."""
    return bool(np.isfinite(tg) and np.isfinite(error) and t_min < tg < t_max and error <= 0.5 * abs(tg))


def _intersection(fit_a, fit_b) -> float:
    (sa, ia), (sb, ib) = fit_a, fit_b
    if abs(sa - sb) < 1e-15:
        return float("nan")
    return (ib - ia) / (sa - sb)


def fit_glass_transition(t, y, liquid_range: Optional[Tuple[float, float]] = None,
                         glass_range: Optional[Tuple[float, float]] = None, n_bootstrap: int = 500,
                         seed: int = 0, quantity: str = "") -> GlassTransition:
    """Tg of any ``y(T)`` curve with a kink (volume, enthalpy...).

    Straight lines are fitted to the liquid branch (``liquid_range``, K) and the
    glass branch (``glass_range``); Tg is where they cross. Without ranges, the
    liquid range is the top 30 % and the glass range the bottom 30 % of the
    temperature span. The error is the standard deviation of Tg over
    ``n_bootstrap`` resamples (with replacement) of the points in each range.
    """
    t = np.asarray(t, dtype=float)
    y = np.asarray(y, dtype=float)
    if t.shape != y.shape or t.ndim != 1:
        raise ValueError("fit_glass_transition: T and y must be 1-d arrays of equal length")
    ok = np.isfinite(t) & np.isfinite(y)
    t, y = t[ok], y[ok]
    lo, hi = float(t.min()), float(t.max())
    span = hi - lo
    if liquid_range is None:
        liquid_range = (hi - 0.3 * span, hi)
    if glass_range is None:
        glass_range = (lo, lo + 0.3 * span)
    liq = (t >= liquid_range[0]) & (t <= liquid_range[1])
    gla = (t >= glass_range[0]) & (t <= glass_range[1])
    for name, sel in (("liquid", liq), ("glass", gla)):
        if sel.sum() < 3:
            raise ValueError(f"fit_glass_transition: fewer than 3 points in the {name} range "
                             f"{liquid_range if name == 'liquid' else glass_range} K")
    fit_l = tuple(np.polyfit(t[liq], y[liq], 1))
    fit_g = tuple(np.polyfit(t[gla], y[gla], 1))
    tg = _intersection(fit_l, fit_g)
    rng = np.random.default_rng(seed)
    il, ig = np.flatnonzero(liq), np.flatnonzero(gla)
    samples = []
    for _ in range(int(n_bootstrap)):
        bl, bg = rng.choice(il, len(il)), rng.choice(ig, len(ig))
        if np.ptp(t[bl]) == 0 or np.ptp(t[bg]) == 0:
            continue
        samples.append(_intersection(np.polyfit(t[bl], y[bl], 1), np.polyfit(t[bg], y[bg], 1)))
    samples = np.array([s for s in samples if np.isfinite(s)])
    error = float(np.std(samples)) if len(samples) > 1 else float("nan")
    return GlassTransition(tg=float(tg), error=error, liquid_range=tuple(map(float, liquid_range)),
                           glass_range=tuple(map(float, glass_range)), liquid_fit=tuple(map(float, fit_l)),
                           glass_fit=tuple(map(float, fit_g)), quantity=quantity)


def protocol_temperature(time_ps, t_melt: float, t_final: float, cooling_rate: float, melt_time: float):
    """Target temperature (K) at ``time_ps`` of the protocol: hold, linear ramp, hold."""
    time_ps = np.asarray(time_ps, dtype=float)
    ramp = t_melt - cooling_rate * (time_ps - melt_time)
    return np.where(time_ps < melt_time, t_melt, np.maximum(ramp, t_final))


class QuenchResult:
    """What a quench recorded: ``data`` (column -> array, see ``quench.csv``) and the protocol.

    ``windows(width)`` averages the cooling stage in temperature windows;
    ``glass_transition(quantity)`` fits them.
    """

    def __init__(self, directory: Path, data: Dict[str, np.ndarray], protocol: dict):
        self.directory = Path(directory)
        self.data = data
        self.protocol = protocol

    @classmethod
    def load(cls, directory) -> "QuenchResult":
        """Read a (finished or partial) quench from its directory."""
        directory = Path(directory)
        protocol = json.loads((directory / "state.json").read_text())["protocol"]
        return cls(directory, _read_csv(directory / "quench.csv"), protocol)

    def windows(self, width: Optional[float] = None) -> Dict[str, np.ndarray]:
        """Means over temperature windows (by target temperature) of the cooling stage.

        ``width`` (K) defaults to the protocol's ``window``. Returns arrays ``T``
        (mean measured temperature), ``volume_per_atom``, ``enthalpy_per_atom``,
        ``epot_per_atom`` and ``n`` (samples per window).
        """
        width = float(width or self.protocol["window"])
        d = self.data
        cool = d["stage"] == "cool"
        if not cool.any():
            return {k: np.zeros(0) for k in ("T", "volume_per_atom", "enthalpy_per_atom", "epot_per_atom", "n")}
        target = d["target_K"][cool]
        key = np.floor((target - self.protocol["t_final"]) / width).astype(int)
        out = {k: [] for k in ("T", "volume_per_atom", "enthalpy_per_atom", "epot_per_atom", "n")}
        for w in np.unique(key)[::-1]:
            sel = key == w
            out["T"].append(d["temperature_K"][cool][sel].mean())
            for k in ("volume_per_atom", "enthalpy_per_atom", "epot_per_atom"):
                out[k].append(d[k][cool][sel].mean())
            out["n"].append(int(sel.sum()))
        return {k: np.array(v) for k, v in out.items()}

    def glass_transition(self, quantity: str = "volume", liquid_range=None, glass_range=None,
                         width: Optional[float] = None) -> GlassTransition:
        """Tg (K) from the kink of ``"volume"`` or ``"enthalpy"`` per atom vs temperature windows."""
        keys = {"volume": "volume_per_atom", "enthalpy": "enthalpy_per_atom"}
        if quantity not in keys:
            raise ValueError(f"quantity must be 'volume' or 'enthalpy', got {quantity!r}")
        w = self.windows(width)
        return fit_glass_transition(w["T"], w[keys[quantity]], liquid_range, glass_range, quantity=quantity)

    def glass_frames(self) -> list:
        """The trajectory frames (``Atoms``) of the final hold at ``t_final``, after the ramp; empty when the
        run wrote no trajectory or has not reached the hold."""
        from ase.io import read

        path = self.directory / "quench.traj"
        if not path.exists():
            return []
        p = self.protocol
        ramp_end_ps = p["melt_time"] + (p["t_melt"] - p["t_final"]) / p["cooling_rate"]
        return [a for a in read(path, ":") if a.info.get("step", 0) * p["timestep_fs"] / 1000.0 > ramp_end_ps]

    def plot(self, path=None, liquid_range=None, glass_range=None):
        """V(T) and H(T) of the cooling windows with the two fits and Tg; returns the figure."""
        import matplotlib

        if path is not None:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        w = self.windows()
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, (quantity, key, label) in zip(axes, [("volume", "volume_per_atom", "V (Å³/atom)"),
                                                     ("enthalpy", "enthalpy_per_atom", "H (eV/atom)")]):
            ax.plot(w["T"], w[key], "o", ms=4, color="C0")
            try:
                tg = self.glass_transition(quantity, liquid_range, glass_range)
            except ValueError:
                tg = None
            if tg is not None and np.isfinite(tg.tg):
                tt = np.linspace(w["T"].min(), w["T"].max(), 50)
                for fit, rng_, color in ((tg.liquid_fit, tg.liquid_range, "C3"), (tg.glass_fit, tg.glass_range, "C2")):
                    ax.plot(tt, np.polyval(fit, tt), "--", color=color, lw=1)
                    ax.axvspan(*rng_, color=color, alpha=0.08)
                if tg.resolved(w["T"].min(), w["T"].max()):
                    ax.axvline(tg.tg, color="k", lw=1)
                    ax.set_title(f"Tg = {tg.tg:.0f} ± {tg.error:.0f} K", fontsize=10)
                else:
                    ax.set_title(f"no kink resolved (fit: {tg.tg:.0f} ± {tg.error:.0f} K)", fontsize=10)
            ax.set_xlabel("T (K)")
            ax.set_ylabel(label)
        p = self.protocol
        fig.suptitle(f"quench {p['t_melt']:.0f} → {p['t_final']:.0f} K at {p['cooling_rate']:g} K/ps, "
                     f"{p['n_atoms']} atoms")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
            plt.close(fig)
        return fig


def _read_csv(path: Path) -> Dict[str, np.ndarray]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = {}
    for k in _FIELDS:
        vals = [r[k] for r in rows]
        out[k] = np.array(vals) if k == "stage" else np.array(vals, dtype=float)
    return out


def _save_state(directory: Path, atoms, step: int, p_eps: float, protocol: dict) -> None:
    from ase.io import write

    tmp = directory / "state.traj.tmp"
    write(tmp, atoms, format="traj")
    os.replace(tmp, directory / "state.traj")
    tmp = directory / "state.json.tmp"
    tmp.write_text(json.dumps({"step": step, "p_eps": p_eps, "protocol": protocol}, indent=1))
    os.replace(tmp, directory / "state.json")


def quench(atoms, calc, t_melt: float = 2000.0, t_final: float = 300.0, cooling_rate: float = 100.0,
           pressure: float = 0.0, timestep: float = 2.0, melt_time: float = 10.0, hold_time: float = 5.0,
           window: float = 50.0, sample_interval: int = 10, trajectory_interval: int = 500,
           checkpoint_interval: int = 500, directory="quench", seed: int = 0, t_tau: float = 100.0,
           p_tau: float = 1000.0, relax_steps: int = 50, max_expansion: float = 2.0, show_progress: bool = True,
           resume: bool = True) -> QuenchResult:
    """Melt, cool linearly and hold ``atoms`` with ``calc`` at constant pressure (ASE MD).

    Args:
        atoms: periodic structure (it is copied; the original is not changed).
        calc: any ASE calculator giving energy, forces and stress (EquiCalc, EMT, EAM...).
        t_melt, t_final: temperatures of the melt and of the end, K.
        cooling_rate: K/ps (1 K/ps = 1e12 K/s).
        pressure: external pressure, bar.
        timestep: fs.
        melt_time, hold_time: ps at ``t_melt`` before and at ``t_final`` after the ramp.
        window: temperature window (K) over which ``windows()`` averages the records.
        sample_interval: MD steps between recorded rows.
        trajectory_interval: steps between frames written to ``quench.traj`` (0 for none).
        checkpoint_interval: steps between saves of the MD state (for resuming).
        directory: output folder: ``quench.csv``, ``quench.traj``, ``state.traj``, ``state.json``, ``log.txt``.
        seed: seed of the velocities and of the Langevin noise.
        t_tau, p_tau: thermostat and barostat time constants, fs.
        relax_steps: on a fresh start, at most this many FIRE steps at fixed cell (to forces
            below 0.2 eV/Å) before the MD. A random start has overlapping atoms and pressures of
            tens of GPa; without the relaxation the barostat's first swing can expand the cell
            far beyond the densities a machine-learned potential was trained on. 0 skips it.
        max_expansion: stop with ``RuntimeError`` when the volume per atom exceeds this multiple of
            the starting structure's (a liquid that evaporates, or a calculator that is unstable at
            low density); the rows recorded so far stay in ``quench.csv``.
        show_progress: progress bar.
        resume: continue from ``directory``'s saved state if there is one (same protocol);
            ``False`` starts afresh and overwrites.

    Returns:
        ``QuenchResult`` over all recorded rows.
    """
    from ase import units
    from ase.io import Trajectory, read
    from ase.md.langevinbaoab import LangevinBAOAB
    from ase.md.velocitydistribution import Stationary, thermalize_momenta
    from tqdm.auto import tqdm

    if not np.all(atoms.pbc):
        raise ValueError("quench: the structure must be periodic in all three directions (NPT)")
    if not (t_melt > 0 and t_final > 0 and cooling_rate > 0 and timestep > 0):
        raise ValueError("quench: t_melt, t_final, cooling_rate and timestep must be positive")
    if t_final > t_melt:
        raise ValueError(f"quench: t_final ({t_final} K) is above t_melt ({t_melt} K)")
    if relax_steps < 0:
        raise ValueError(f"quench: relax_steps must be >= 0, got {relax_steps}")
    if not max_expansion > 1:
        raise ValueError(f"quench: max_expansion must be > 1, got {max_expansion}")
    v_start = atoms.get_volume() / len(atoms)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cool_time = (t_melt - t_final) / cooling_rate
    total_ps = melt_time + cool_time + hold_time
    n_steps = int(round(total_ps * 1000.0 / timestep))
    protocol = dict(t_melt=float(t_melt), t_final=float(t_final), cooling_rate=float(cooling_rate),
                    pressure_bar=float(pressure), timestep_fs=float(timestep), melt_time=float(melt_time),
                    hold_time=float(hold_time), window=float(window), n_atoms=len(atoms), n_steps=n_steps,
                    seed=int(seed), relax_steps=int(relax_steps), formula=atoms.get_chemical_formula())
    state_file = directory / "state.json"
    csv_path = directory / "quench.csv"
    traj_path = directory / "quench.traj"
    start_step, p_eps = 0, 0.0
    if resume and state_file.exists():
        saved = json.loads(state_file.read_text())
        if saved["protocol"] != protocol:
            raise ValueError(f"quench: {directory} holds a run with another protocol; use another directory "
                             "or resume=False")
        start_step, p_eps = int(saved["step"]), float(saved["p_eps"])
        atoms = read(directory / "state.traj")
        _truncate_records(csv_path, traj_path, start_step)
    else:
        for p in (csv_path, traj_path, state_file, directory / "state.traj", directory / "log.txt"):
            if p.exists():
                p.unlink()
        atoms = atoms.copy()
        if relax_steps:
            from ase.optimize import FIRE

            atoms.calc = calc
            FIRE(atoms, logfile=None).run(fmax=0.2, steps=relax_steps)
        thermalize_momenta(atoms, temperature_K=t_melt, rng=np.random.default_rng(seed))
        Stationary(atoms)
    atoms.calc = calc
    if start_step >= n_steps:
        return QuenchResult(directory, _read_csv(csv_path), protocol)

    def target(step):
        return float(protocol_temperature(step * timestep / 1000.0, t_melt, t_final, cooling_rate, melt_time))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the barostat-mass heuristic announces itself
        dyn = LangevinBAOAB(atoms, timestep * units.fs, temperature_K=target(start_step),
                            externalstress=-pressure * units.bar, hydrostatic=True, T_tau=t_tau * units.fs,
                            P_tau=p_tau * units.fs, rng=np.random.default_rng([seed, start_step]))
    dyn.p_eps = p_eps
    new_csv = not csv_path.exists()
    fh = open(csv_path, "a", newline="")
    writer = csv.DictWriter(fh, fieldnames=_FIELDS)
    if new_csv:
        writer.writeheader()
    traj = Trajectory(traj_path, "a") if trajectory_interval else None
    log = open(directory / "log.txt", "a")
    log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {'resumed at' if start_step else 'started'} step "
              f"{start_step} of {n_steps}: {json.dumps(protocol)}\n")
    n = len(atoms)
    v_limit = max_expansion * v_start
    bar = tqdm(total=n_steps, initial=start_step, unit="step", desc="quench", disable=not show_progress)
    step = start_step
    try:
        while step < n_steps:
            dyn.set_temperature(target(step))
            dyn.run(1)
            step += 1
            bar.update(1)
            if step % sample_interval == 0:
                t_ps = step * timestep / 1000.0
                stage = "melt" if t_ps <= melt_time else ("cool" if t_ps <= melt_time + cool_time else "hold")
                epot = atoms.get_potential_energy() / n
                ekin = atoms.get_kinetic_energy() / n
                vol = atoms.get_volume() / n
                temp = atoms.get_temperature()
                stress = atoms.get_stress(include_ideal_gas=True)
                p_gpa = -stress[:3].mean() * _EV_PER_A3_TO_GPA
                enthalpy = epot + ekin + pressure * units.bar * vol
                writer.writerow(dict(step=step, time_ps=round(t_ps, 6), stage=stage, target_K=round(target(step), 4),
                                     temperature_K=temp, volume_per_atom=vol, epot_per_atom=epot,
                                     ekin_per_atom=ekin, enthalpy_per_atom=enthalpy, pressure_GPa=p_gpa))
                bar.set_postfix(T=f"{temp:.0f} K", V=f"{vol:.2f}")
                if not (vol < v_limit and np.isfinite(epot)):
                    raise RuntimeError(
                        f"quench: at step {step} ({temp:.0f} K) the volume reached {vol:.2f} Å^3/atom, more than "
                        f"{max_expansion:g}x the start ({v_start:.2f}), with E_pot {epot:.3f} eV/atom: the system "
                        "is evaporating, or the calculator is unstable at low density. The rows so far are in "
                        f"{csv_path}")
            if traj is not None and step % trajectory_interval == 0:
                atoms.info["step"] = step
                traj.write(atoms)
            if step % checkpoint_interval == 0 or step == n_steps:
                fh.flush()
                _save_state(directory, atoms, step, float(dyn.p_eps), protocol)
    finally:
        bar.close()
        fh.close()
        if traj is not None:
            traj.close()
        log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} stopped at step {step}\n")
        log.close()
    return QuenchResult(directory, _read_csv(csv_path), protocol)


def _truncate_records(csv_path: Path, traj_path: Path, last_step: int) -> None:
    """Drop rows and frames recorded after the saved state we resume from."""
    if csv_path.exists():
        with open(csv_path, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if int(float(r["step"])) <= last_step]
        with open(csv_path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    if traj_path.exists():
        from ase.io import Trajectory, read

        frames = [a for a in read(traj_path, ":") if a.info.get("step", 0) <= last_step]
        with Trajectory(traj_path, "w") as t:
            for a in frames:
                t.write(a)
