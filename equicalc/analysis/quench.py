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
frames go to ``quench.traj`` and the MD state, with what made the run (protocol
and calculator), to ``state.json``. Calling ``quench`` again with the same
directory resumes after the last saved state (a killed run loses at most
``checkpoint_interval`` steps, and ends exactly as if it had not been killed);
it refuses another protocol or calculator, and ``overwrite=True`` starts afresh.

Units: temperatures K, rates K/ps, times ps, pressure bar (input) and GPa
(output), volumes Å³/atom, energies eV/atom.
"""
from __future__ import annotations

import csv
import json
import os
import textwrap
import time
import warnings
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from .tg import GlassTransition, _stacked, fit_glass_transition, mean_curve, tg_resolved
from .voronoi import VoronoiResult, voronoi

__all__ = ["quench", "QuenchResult", "EnsembleQuenchResult", "GlassTransition", "fit_glass_transition", "protocol_temperature",
           "tg_resolved", "report", "summary_text", "load_quench", "relaxed_start"]

_FIELDS = ["step", "time_ps", "stage", "target_K", "temperature_K", "volume_per_atom", "epot_per_atom",
           "ekin_per_atom", "enthalpy_per_atom", "pressure_GPa"]
_EV_PER_A3_TO_GPA = 160.21766208


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
        return cls(directory, _read_csv(directory / "quench.csv"), _saved_protocol(directory))

    @property
    def finished(self) -> bool:
        """Whether the run reached the protocol's last step (``log.txt`` records where each run stopped)."""
        log = self.directory / "log.txt"
        stops = [line for line in log.read_text().splitlines() if " stopped at step " in line] if log.exists() else []
        return bool(stops) and int(stops[-1].rsplit(" ", 1)[1]) >= self.protocol["n_steps"]

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
                         width: Optional[float] = None, method: str = "windows") -> GlassTransition:
        """Tg (K) from the kink of ``"volume"`` or ``"enthalpy"`` per atom vs temperature windows.

        ``method``: ``"windows"`` (straight lines over ``liquid_range`` and ``glass_range``) or
        ``"hyperbola"`` (the whole curve; the ranges are not used), see ``equicalc.analysis.tg``.
        """
        keys = {"volume": "volume_per_atom", "enthalpy": "enthalpy_per_atom"}
        if quantity not in keys:
            raise ValueError(f"quantity must be 'volume' or 'enthalpy', got {quantity!r}")
        w = self.windows(width)
        return fit_glass_transition(w["T"], w[keys[quantity]], liquid_range, glass_range, quantity=quantity,
                                    method=method)

    def frames(self) -> list:
        """The trajectory frames (``Atoms``), each with ``info["step"]`` and ``info["temperature"]`` (the
        protocol's target at that step, K); empty when the run wrote no trajectory."""
        from ase.io import read

        path = self.directory / "quench.traj"
        if not path.exists():
            return []
        frames = read(path, ":")
        for a in frames:
            a.info["temperature"] = _target(a.info.get("step", 0), self.protocol)
        return frames

    def glass_frames(self) -> list:
        """The trajectory frames of the final hold at ``t_final``, after the ramp; empty when the run wrote no
        trajectory or has not reached the hold."""
        p = self.protocol
        ramp_end_ps = p["melt_time"] + (p["t_melt"] - p["t_final"]) / p["cooling_rate"]
        return [a for a in self.frames() if a.info["step"] * p["timestep_fs"] / 1000.0 > ramp_end_ps]

    def voronoi(self, **options) -> VoronoiResult:
        """Voronoi indices of every trajectory frame, labelled with its target temperature: the icosahedral
        order along the quench (``options``: those of ``equicalc.analysis.voronoi``)."""
        return voronoi(self.frames(), **options)

    def summary(self, liquid_range=None, glass_range=None, rdf_r_max: float = 8.0, rdf_bins: int = 160) -> dict:
        """What the run found, as plain values: Tg from V(T) and H(T) (``tg_volume``, ``tg_enthalpy`` by windows,
        ``tg_volume_hyperbola``, ``tg_enthalpy_hyperbola`` by the whole-curve fit: K, error, whether a kink was
        resolved, fit ranges; or the reason there is none; ``tg_volume_enthalpy_agree[_hyperbola]``: whether the
        two agree within twice their combined error), the glass's mean volume (Å³/atom) and potential energy
        (eV/atom) over the final hold, and the first RDF peaks (Å) of its frames.

        Also returns the ``GlassTransition`` objects under ``"fits"`` and the ``RDFResult`` under ``"rdf"``
        (not JSON: drop them before writing).
        """
        def fit(quantity, method):
            return self.glass_transition(quantity, liquid_range, glass_range, method=method)

        return _summary(self.protocol, fit, [self], rdf_r_max, rdf_bins)

    def plot(self, path=None, liquid_range=None, glass_range=None, axes=None):
        """V(T) and H(T) of the cooling windows with the two fits and Tg (on ``axes``, a pair, or a new figure);
        returns the ``Figure``."""
        from ..plotting import new_figure

        w = self.windows()
        if axes is None:
            fig, axes = new_figure(2, size=(10, 4))
        for ax, (quantity, key, label) in zip(axes, [("volume", "volume_per_atom", "V (Å³/atom)"),
                                                     ("enthalpy", "enthalpy_per_atom", "H (eV/atom)")]):
            ax.plot(w["T"], w[key], "o", ms=4, color="C0")
            try:
                tg = self.glass_transition(quantity, liquid_range, glass_range)
            except ValueError:
                tg = None
            if tg is not None and np.isfinite(tg.tg):
                _draw_fits(ax, tg, w["T"])
            ax.set_xlabel("T (K)")
            ax.set_ylabel(label)
        return _titled(axes, self.protocol, "quench", f"{self.protocol['n_atoms']} atoms", path)


class EnsembleQuenchResult:
    """Independent replicas of one quench protocol: ``replicas`` (a ``QuenchResult`` each) and the ensemble's Tg."""

    _KEYS = {"volume": "volume_per_atom", "enthalpy": "enthalpy_per_atom"}

    def __init__(self, directory: Path, replicas: list):
        self.directory = Path(directory)
        self.replicas = list(replicas)

    @classmethod
    def load(cls, directory, finished: bool = False) -> "EnsembleQuenchResult":
        """Read an ensemble (finished or partial) from its directory: the ``replica_<k>`` folders, in order of k.
        ``finished``: only the replicas that reached the protocol's end (one still starting, without records
        yet, is skipped too)."""
        directory = Path(directory)
        folders = sorted(directory.glob("replica_*"), key=_replica_index)
        if not folders:
            raise FileNotFoundError(f"quench: no replica_* folders in {directory}")
        if not finished:
            return cls(directory, [QuenchResult.load(folder) for folder in folders])
        replicas = [_load_if_present(folder) for folder in folders]
        return cls(directory, [r for r in replicas if r is not None and r.finished])

    @property
    def indices(self) -> list:
        """Each replica's k, from its folder ``replica_<k>`` (the seed offset it ran with)."""
        return [_replica_index(r.directory) for r in self.replicas]

    @property
    def protocol(self) -> dict:
        """The protocol of replica 0 (the others differ only in their seeds)."""
        return self.replicas[0].protocol

    def glass_transition(self, quantity: str = "volume", method: str = "hyperbola", liquid_range=None,
                         glass_range=None, width: Optional[float] = None, pooled: bool = False) -> GlassTransition:
        """Tg (K): each replica's cooling curve fitted alone, then mean ± standard error (``.per_replica``);
        ``pooled``: the replicas' mean curve fitted once, with the jackknife error over the replicas."""
        from .tg import ensemble_glass_transition, pooled_glass_transition

        ranges = {} if method == "hyperbola" else {"liquid_range": liquid_range, "glass_range": glass_range}
        combine = pooled_glass_transition if pooled else ensemble_glass_transition
        return combine(self._curves(quantity, width), quantity, method, **ranges)

    def _curves(self, quantity: str, width: Optional[float] = None) -> list:
        """Each replica's cooling curve of ``quantity`` over its temperature windows: ``(T, y)`` pairs."""
        if quantity not in self._KEYS:
            raise ValueError(f"quantity must be 'volume' or 'enthalpy', got {quantity!r}")
        return [(w["T"], w[self._KEYS[quantity]]) for w in (r.windows(width) for r in self.replicas)]

    def mean_windows(self, quantity: str = "volume", width: Optional[float] = None) -> Dict[str, np.ndarray]:
        """The replicas' mean cooling curve of ``quantity`` ("volume": Å^3/atom, "enthalpy": eV/atom) over the
        temperature windows of ``QuenchResult.windows``: arrays ``T`` (K), ``mean`` and ``error`` (the standard
        error over the replicas, in the unit of ``mean``). The replicas' windows must match one to one."""
        if len(self.replicas) < 2:
            raise ValueError(f"mean_windows: needs two or more replicas, got {len(self.replicas)}")
        t, y = _stacked(self._curves(quantity, width))
        return {"T": t.mean(axis=0), "mean": y.mean(axis=0), "error": y.std(axis=0, ddof=1) / np.sqrt(len(y))}

    def summary(self, liquid_range=None, glass_range=None, rdf_r_max: float = 8.0, rdf_bins: int = 160) -> dict:
        """``QuenchResult.summary`` for the ensemble: Tg as mean ± standard error over the replicas (with
        ``per_replica_K``) and, from two replicas on, from their mean curve by window fits (``tg_volume_pooled``,
        ``tg_enthalpy_pooled``: jackknife errors); the glass's volume and energy as means over the replicas (with
        their standard errors), and the RDF of all replicas' glass frames."""
        def fit(quantity, method, pooled=False):
            return self.glass_transition(quantity, method, liquid_range, glass_range, pooled=pooled)

        out = _summary(self.protocol, fit, self.replicas, rdf_r_max, rdf_bins, pooled=len(self.replicas) > 1)
        out["replicas"] = len(self.replicas)
        return out

    def voronoi(self, **options) -> VoronoiResult:
        """``QuenchResult.voronoi`` of all replicas as one result (their frames share the target temperatures)."""
        return VoronoiResult.concatenate([r.voronoi(**options) for r in self.replicas])

    def plot(self, path=None, liquid_range=None, glass_range=None, method: str = "hyperbola", axes=None):
        """V(T) and H(T) of every replica, and the ensemble's Tg (``method``; windows use the ranges), on
        ``axes`` (a pair) or a new figure; returns the ``Figure``."""
        from ..plotting import new_figure

        if axes is None:
            fig, axes = new_figure(2, size=(10, 4))
        windows = [r.windows() for r in self.replicas]
        many = len(windows) > 8  # then grey curves and their mean, not a legend of replicas
        for ax, (quantity, label) in zip(axes, (("volume", "V (Å³/atom)"), ("enthalpy", "H (eV/atom)"))):
            key = self._KEYS[quantity]
            for r, w in zip(self.replicas, windows):
                style = dict(color="0.6", alpha=0.5) if many else dict(alpha=0.7, label=r.directory.name.replace("_", " "))
                ax.plot(w["T"], w[key], "o-", ms=2, lw=0.8, **style)
            if many and len({len(w["T"]) for w in windows}) == 1:
                ax.plot(*mean_curve([(w["T"], w[key]) for w in windows]), "k-", lw=1.5,
                        label=f"mean of {len(windows)} replicas")
            try:
                tg = self.glass_transition(quantity, method, liquid_range, glass_range)
                ax.axvspan(tg.tg - tg.error, tg.tg + tg.error, color="k", alpha=0.12)
                ax.axvline(tg.tg, color="k", lw=1)
                ax.set_title(f"Tg = {tg.tg:.0f} ± {tg.error:.0f} K ({tg.replicas_used()} replicas)", fontsize=10)
            except ValueError as exc:
                ax.set_title(textwrap.fill(f"no ensemble Tg: {exc}", 70), fontsize=7)
            ax.set_xlabel("T (K)")
            ax.set_ylabel(label)
        axes[0].legend(fontsize=7, frameon=False)
        return _titled(axes, self.protocol, f"{len(self.replicas)} replicas,",
                       f"{self.protocol['n_atoms']} atoms each", path)


def _replica_index(folder: Path) -> int:
    """k of a replica folder ``replica_<k>``."""
    return int(folder.name.split("_")[1])


def _titled(axes, protocol: dict, before: str, after: str, path):
    """The V(T)/H(T) figure of ``axes`` titled with the protocol (saved to ``path`` if given); returns it."""
    from ..plotting import save_figure

    p, fig = protocol, axes[0].figure
    fig.suptitle(f"{before} {p['t_melt']:.0f} → {p['t_final']:.0f} K at {p['cooling_rate']:g} K/ps, {after}")
    if path is not None:
        save_figure(fig, path)
    return fig


def load_quench(directory):
    """The quench in ``directory``: an ``EnsembleQuenchResult`` where it holds replica folders, else a
    ``QuenchResult``."""
    directory = Path(directory)
    if any(directory.glob("replica_*")):
        return EnsembleQuenchResult.load(directory)
    if not (directory / "quench.csv").exists():
        raise FileNotFoundError(f"quench: no quench.csv or replica_* folders in {directory}")
    return QuenchResult.load(directory)


def report(result, summary: Optional[dict] = None, path=None, liquid_range=None, glass_range=None):
    """One page of a quench or an ensemble (``result``): V(T) and H(T) with Tg, g(r) of the glass, the Cu-centred
    (else the first species') icosahedral fraction along the quench, the leading Voronoi polyhedra of the glass,
    and the numbers of ``summary`` (``result.summary()`` by default). Returns the ``Figure``."""
    from ..plotting import new_figure, save_figure

    if summary is None:
        summary = result.summary(liquid_range, glass_range)
    fig, axes = new_figure(3, 2, size=(16.0, 9.0))
    result.plot(liquid_range=liquid_range, glass_range=glass_range, axes=axes[0, :2])
    if summary["rdf"] is not None:
        summary["rdf"].plot(ax=axes[0, 2])
        axes[0, 2].set_title("the glass", fontsize=10)
    structure = result.voronoi()
    if structure.indices:
        structure.plot(structure.default_centre, axes=axes[1, :2])
    axes[1, 2].axis("off")
    axes[1, 2].text(0.0, 1.0, summary_text(summary), va="top", family="monospace", fontsize=8,
                    transform=axes[1, 2].transAxes)
    if path is not None:
        save_figure(fig, path)
    return fig


def summary_text(summary: dict) -> str:
    """The numbers of a quench summary as lines of text (Tg by each fit, the glass, its icosahedral order)."""
    lines = [f"{summary.get('replicas', 1)} replica(s), {summary['protocol']['n_atoms']} atoms each"]
    for key, label in (("tg_volume_hyperbola", "Tg from V, whole curve"), ("tg_enthalpy_hyperbola", "Tg from H, whole curve"),
                       ("tg_volume", "Tg from V, windows"), ("tg_enthalpy", "Tg from H, windows"),
                       ("tg_volume_pooled", "Tg from mean V, windows"), ("tg_enthalpy_pooled", "Tg from mean H, windows")):
        if key.endswith("_pooled") and key not in summary:
            continue
        fit = summary.get(key, {})
        lines.append(f"{label}: " + (f"{fit['tg_K']:.0f} ± {fit['error_K']:.0f} K" + ("" if fit["resolved"] else
                     " (no kink resolved)") if "tg_K" in fit else "none"))
    if "glass_volume_per_atom" in summary:
        lines.append(f"glass V = {summary['glass_volume_per_atom']:.3f} Å³/atom, "
                     f"Epot = {summary['glass_epot_per_atom']:.4f} eV/atom")
    for species, value in summary.get("glass_icosahedral_fraction", {}).items():
        error = summary.get("glass_icosahedral_fraction_error", {}).get(species)
        lines.append(f"{species}-centred ⟨0,0,12,0⟩: {value:.3f}" + (f" ± {error:.3f}" if error is not None else ""))
    return "\n".join(lines)


def _volume_and_enthalpy_agree(tg_v, tg_h):
    """Whether Tg from V(T) and from H(T) agree within twice their combined error (None: not both there)."""
    if tg_v is None or tg_h is None or not all(np.isfinite([tg_v.tg, tg_h.tg, tg_v.error, tg_h.error])):
        return None
    return bool(abs(tg_v.tg - tg_h.tg) <= 2.0 * np.hypot(tg_v.error, tg_h.error))


def _summary(protocol: dict, fit, results: list, rdf_r_max: float, rdf_bins: int, pooled: bool = False) -> dict:
    """The plain-value summary of one run or an ensemble (``fit(quantity, method)`` gives its Tg; ``pooled``:
    also ``fit(quantity, "windows", pooled=True)``, an ensemble's mean curve, as ``tg_<quantity>_pooled``)."""
    out, fits = {"protocol": protocol}, {}
    variants = [("windows", "", {}), ("hyperbola", "_hyperbola", {})] + ([("windows", "_pooled", {"pooled": True})]
                                                                         if pooled else [])
    for quantity in ("volume", "enthalpy"):
        for method, suffix, options in variants:
            key = f"tg_{quantity}{suffix}"
            try:
                tg = fit(quantity, method, **options)
            except ValueError as exc:
                out[key] = {"error": str(exc)}
                continue
            fits[quantity + suffix] = tg
            out[key] = {"tg_K": tg.tg, "error_K": tg.error, "resolved": tg.resolved(protocol["t_final"],
                                                                                    protocol["t_melt"]),
                        "liquid_range_K": tg.liquid_range, "glass_range_K": tg.glass_range, "method": method,
                        "per_replica_K": list(tg.per_replica)}
    for suffix in ("", "_hyperbola"):
        agree = _volume_and_enthalpy_agree(fits.get("volume" + suffix), fits.get("enthalpy" + suffix))
        if agree is not None:
            out[f"tg_volume_enthalpy_agree{suffix}"] = agree
    for column, key in (("volume_per_atom", "glass_volume_per_atom"), ("epot_per_atom", "glass_epot_per_atom")):
        values = [float(r.data[column][r.data["stage"] == "hold"].mean()) for r in results
                  if (r.data["stage"] == "hold").any()]
        if values:
            out[key] = float(np.mean(values))
            if len(values) > 1:
                out[key + "_error"] = float(np.std(values, ddof=1) / np.sqrt(len(values)))
    glasses = [r.glass_frames() for r in results]
    g = None
    if any(glasses):
        from .rdf import rdf

        g = rdf([a for frames in glasses for a in frames], r_max=rdf_r_max, nbins=rdf_bins)
        out["rdf_first_peaks_A"] = g.first_peak()
        out.update(_icosahedral_order([frames for frames in glasses if frames]))
    out["fits"], out["rdf"] = fits, g
    return out


def _icosahedral_order(glasses: list) -> dict:
    """Per species, the fraction of atoms at the centre of a full icosahedron ⟨0,0,12,0⟩ in the glass frames
    (``glasses``: one list of frames per replica): the mean over replicas, and its standard error."""
    per_replica = [voronoi(frames) for frames in glasses]
    out = {"glass_icosahedral_fraction": {}, "glass_icosahedral_fraction_error": {}}
    for species in sorted(per_replica[0].species):
        values = [float(v.icosahedral_fraction(species).mean()) for v in per_replica]
        out["glass_icosahedral_fraction"][species] = float(np.mean(values))
        if len(values) > 1:
            out["glass_icosahedral_fraction_error"][species] = float(np.std(values, ddof=1) / np.sqrt(len(values)))
    if not out["glass_icosahedral_fraction_error"]:
        del out["glass_icosahedral_fraction_error"]
    return out




def _draw_fits(ax, tg: GlassTransition, temperatures) -> None:
    """The liquid and glass fits with their ranges, and Tg when the kink is resolved."""
    tt = np.linspace(temperatures.min(), temperatures.max(), 50)
    for fit, rng_, color in ((tg.liquid_fit, tg.liquid_range, "C3"), (tg.glass_fit, tg.glass_range, "C2")):
        ax.plot(tt, np.polyval(fit, tt), "--", color=color, lw=1)
        ax.axvspan(*rng_, color=color, alpha=0.08)
    if tg.resolved(temperatures.min(), temperatures.max()):
        ax.axvline(tg.tg, color="k", lw=1)
        ax.set_title(f"Tg = {tg.tg:.0f} ± {tg.error:.0f} K", fontsize=10)
    else:
        ax.set_title(f"no kink resolved (fit: {tg.tg:.0f} ± {tg.error:.0f} K)", fontsize=10)


def _load_if_present(folder: Path) -> Optional[QuenchResult]:
    """``QuenchResult.load(folder)``, or None where the replica has no records: not started yet, or being started
    afresh by another process at this moment (which deletes its old records first)."""
    try:
        return QuenchResult.load(folder)
    except FileNotFoundError:
        return None


def _read_csv(path: Path) -> Dict[str, np.ndarray]:
    """The records, without a last row that is still being written (missing fields)."""
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if None not in r.values()]
    out = {}
    for k in _FIELDS:
        vals = [r[k] for r in rows]
        out[k] = np.array(vals) if k == "stage" else np.array(vals, dtype=float)
    return out


def _save_state(directory: Path, atoms, step: int, barostat: dict, protocol: dict, calculator: dict) -> None:
    """The whole MD state in one file, written atomically: a kill leaves the previous state or this one.

    ``barostat``: the integrator's cell momentum ``p_eps`` and cell force ``force_eps`` (the latter was computed
    before the step's last velocity half-kick, so it cannot be recomputed from the saved velocities).
    """
    from ase.io.jsonio import encode

    from ..files import atomic_write

    text = encode({"step": step, "barostat": barostat, "protocol": protocol, "calculator": calculator,
                   "atoms": atoms.todict()})
    if (directory / "state.json").exists():  # the previous state stays, for replicas that must wait for others
        os.replace(directory / "state.json", directory / "state_prev.json")
    atomic_write(directory / "state.json", lambda tmp: Path(tmp).write_text(text))


def _saved_protocol(directory: Path) -> dict:
    """The protocol of the run in ``directory``: from its saved state, or, where only the records were kept
    (the state files hold the whole MD state and are not worth keeping once a run has ended), from the last
    start or resume that ``log.txt`` records."""
    if (directory / "state.json").exists() or (directory / "state_prev.json").exists():
        return _load_state(directory)["protocol"]
    log = directory / "log.txt"
    starts = [line for line in log.read_text().splitlines() if " of " in line and ": {" in line] if log.exists() else []
    if not starts:
        raise FileNotFoundError(f"quench: {directory} holds neither a saved state nor a log.txt with the protocol")
    return json.loads(starts[-1].split(": ", 1)[1])


def _load_state(directory: Path, name: str = "state.json") -> dict:
    """A saved state; ``state.json``, or the previous one when a kill came between its two renames."""
    from ase import Atoms
    from ase.io.jsonio import decode

    path = directory / name
    if name == "state.json" and not path.exists():
        path = directory / "state_prev.json"
    state = decode(path.read_text())
    if "atoms" not in state:
        raise ValueError(f"quench: {directory} holds a run saved by an older equicalc; start afresh with overwrite")
    state["atoms"] = Atoms.fromdict(state["atoms"])
    return state


def quench(atoms, calc, t_melt: float = 2000.0, t_final: float = 300.0, cooling_rate: float = 100.0,
           pressure: float = 0.0, timestep: float = 2.0, melt_time: float = 10.0, hold_time: float = 5.0,
           window: float = 50.0, sample_interval: int = 10, trajectory_interval: int = 500,
           checkpoint_interval: int = 500, directory="quench", seed: int = 0, t_tau: float = 100.0,
           p_tau: float = 1000.0, relax_steps: int = 50, max_expansion: float = 2.0, show_progress: bool = True,
           overwrite: bool = False, replicas: int = 1, first_replica: int = 0):
    """Melt, cool linearly and hold ``atoms`` with ``calc`` at constant pressure (ASE MD).

    Args:
        atoms: periodic structure (it is copied; the original is not changed), or a list of them, one
            start per replica.
        replicas: independent replicas (>= 1), advanced in lockstep with one batched evaluation per MD step
            (``equicalc.ensemble.BatchedCalculators``); replica ``k`` uses seed ``seed + k`` and its own
            start (``atoms[k]``, or ``atoms`` for all) and writes to ``directory/replica_<k>``. Each is the
            run it would be alone. With more than one, the result is an ``EnsembleQuenchResult``.
        first_replica: index of the first of these replicas (default 0). With ``first_replica=4,
            replicas=4``, replicas 4–7 run, each with the seed and folder it would have in one ensemble of
            all eight: an ensemble grows batch by batch, and ``EnsembleQuenchResult.load(directory)``
            reads every replica there.
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
        directory: output folder: ``quench.csv``, ``quench.traj``, ``state.json``, ``log.txt``.
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
        overwrite: start afresh where ``directory`` holds a run, deleting its files (it says which).
            Without it, a run in ``directory`` is resumed from its last saved state, and only when
            protocol and calculator (class, and for an EquiCalc its weights and dtype) are the ones
            that started it; anything else is a ``ValueError`` that names what differs. A finished run
            whose state files were removed is a ``ValueError`` too (its records stay; read them with
            ``QuenchResult.load``); one that stopped before its first save starts afresh.

    Returns:
        ``QuenchResult`` over all recorded rows (``EnsembleQuenchResult`` for several replicas).
    """
    starts = list(atoms) if isinstance(atoms, (list, tuple)) else [atoms] * replicas
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1 or len(starts) != replicas:
        raise ValueError(f"quench: replicas must be a positive integer and match the starting structures, got "
                         f"{replicas!r} for {len(starts)} structures")
    if isinstance(first_replica, bool) or not isinstance(first_replica, int) or first_replica < 0:
        raise ValueError(f"quench: first_replica must be a non-negative integer, got {first_replica!r}")
    for start in starts:
        _check_arguments(start, t_melt, t_final, cooling_rate, timestep, relax_steps, max_expansion)
    if len({tuple(sorted(set(a.get_chemical_symbols()))) for a in starts}) > 1:
        raise ValueError("quench: the replicas' starting structures hold different sets of species")
    implemented = getattr(calc, "implemented_properties", None)
    if implemented is not None and "stress" not in implemented:
        raise ValueError(f"quench: {type(calc).__name__} gives no stress, which the NPT barostat needs")
    directory = Path(directory)
    indices = range(first_replica, first_replica + replicas)
    folders = [directory] if replicas == 1 and not first_replica else [directory / f"replica_{k}" for k in indices]
    runs = []
    for k, start, folder in zip(indices, starts, folders):
        folder.mkdir(parents=True, exist_ok=True)
        protocol = make_protocol(start, t_melt, t_final, cooling_rate, pressure, timestep, melt_time, hold_time,
                                 window, seed + k, relax_steps)
        runs.append(_Run.prepare(start, calc, folder, protocol, overwrite, max_expansion))
    md = dict(t_tau=t_tau, p_tau=p_tau, sample_interval=sample_interval, trajectory_interval=trajectory_interval,
              checkpoint_interval=checkpoint_interval)
    if replicas == 1:
        runs[0].advance(calc, show_progress=show_progress, **md)
        return runs[0].result()
    _align(runs)
    from ..ensemble import BatchedCalculators

    group = BatchedCalculators(calc, replicas)
    group.run([lambda k=k: runs[k].advance(group[k], show_progress=show_progress and k == 0, **md)
               for k in range(replicas)])
    return EnsembleQuenchResult(directory, [run.result() for run in runs])


class _Run:
    """One replica of a quench: its folder, protocol and the state it goes on from."""

    def __init__(self, folder, protocol, fingerprint, atoms, step, barostat, v_limit):
        self.folder, self.protocol, self.fingerprint = folder, protocol, fingerprint
        self.atoms, self.step, self.barostat, self.v_limit = atoms, step, barostat, v_limit

    @classmethod
    def prepare(cls, atoms, calc, folder: Path, protocol: dict, overwrite: bool, max_expansion: float) -> "_Run":
        """The saved state of ``folder`` (checked to be this run's), or a fresh, relaxed, thermalised start."""
        from ..md import calculator_fingerprint

        v_limit = max_expansion * atoms.get_volume() / len(atoms)
        fingerprint = calculator_fingerprint(calc)
        state, step, barostat = _start(atoms, calc, folder, protocol, fingerprint, overwrite)
        return cls(folder, protocol, fingerprint, state, step, barostat, v_limit)

    def advance(self, calc, t_tau, p_tau, sample_interval, trajectory_interval, checkpoint_interval,
                show_progress) -> None:
        """MD with ``calc`` from the state to the protocol's end."""
        self.atoms.calc = calc
        if self.step >= self.protocol["n_steps"]:
            return
        dyn = _dynamics(self.atoms, self.protocol, self.step, self.barostat, t_tau, p_tau)
        with _Records(self.folder, self.protocol, self.fingerprint, self.step, trajectory_interval) as records:
            _run_segment(dyn, self.atoms, records, self.protocol, self.step, sample_interval, trajectory_interval,
                         checkpoint_interval, self.v_limit, show_progress)

    def result(self) -> QuenchResult:
        return QuenchResult(self.folder, _read_csv(self.folder / "quench.csv"), self.protocol)


def _align(runs) -> None:
    """Replicas resume from one step: a kill between two replicas' saves leaves some a checkpoint ahead; those
    go back to their previous saved state (each keeps one), so that all advance in lockstep again."""
    common = min(run.step for run in runs)
    for run in runs:
        if run.step == common:
            continue
        previous = _load_state(run.folder, "state_prev.json")
        if int(previous["step"]) != common:
            raise ValueError(f"quench: the replicas in {run.folder.parent} were saved at steps too far apart "
                             f"({common} and {run.step}) to resume together; start afresh with overwrite")
        _truncate_records(run.folder / "quench.csv", run.folder / "quench.traj", common)
        run.atoms, run.step, run.barostat = previous["atoms"], common, previous["barostat"]


def _check_arguments(atoms, t_melt, t_final, cooling_rate, timestep, relax_steps, max_expansion) -> None:
    if not np.all(atoms.pbc):
        raise ValueError("quench: the structure must be periodic in all three directions (NPT)")
    if len(atoms) < 2:
        raise ValueError(f"quench: needs at least 2 atoms, got {len(atoms)}")
    if not (t_melt > 0 and t_final > 0 and cooling_rate > 0 and timestep > 0):
        raise ValueError("quench: t_melt, t_final, cooling_rate and timestep must be positive")
    if t_final > t_melt:
        raise ValueError(f"quench: t_final ({t_final} K) is above t_melt ({t_melt} K)")
    if relax_steps < 0:
        raise ValueError(f"quench: relax_steps must be >= 0, got {relax_steps}")
    if not max_expansion > 1:
        raise ValueError(f"quench: max_expansion must be > 1, got {max_expansion}")


def make_protocol(atoms, t_melt, t_final, cooling_rate, pressure, timestep, melt_time, hold_time, window, seed,
                  relax_steps) -> dict:
    """The protocol as plain values (stored with the run: a run resumes only under the same protocol)."""
    total_ps = melt_time + (t_melt - t_final) / cooling_rate + hold_time
    return dict(t_melt=float(t_melt), t_final=float(t_final), cooling_rate=float(cooling_rate),
                pressure_bar=float(pressure), timestep_fs=float(timestep), melt_time=float(melt_time),
                hold_time=float(hold_time), window=float(window), n_atoms=len(atoms),
                n_steps=int(round(total_ps * 1000.0 / timestep)), seed=int(seed), relax_steps=int(relax_steps),
                formula=atoms.get_chemical_formula())


RUN_FILES = ("quench.csv", "quench.traj", "state.json", "state_prev.json", "log.txt", "summary.json", "quench.png",
             "rdf.png")


def _start(atoms, calc, directory: Path, protocol: dict, fingerprint: dict, overwrite: bool):
    """(atoms, first step, barostat state): the saved state of ``directory`` (checked to be this run's), or a fresh,
    relaxed, thermalised start (``overwrite`` deletes an existing run's files first)."""
    from ase.md.velocitydistribution import Stationary, thermalize_momenta

    from ..files import remove_temporary

    remove_temporary(directory)
    if ((directory / "state.json").exists() or (directory / "state_prev.json").exists()) and not overwrite:
        saved = _load_state(directory)
        for name, now, then in (("protocol", protocol, saved["protocol"]), ("calculator", fingerprint,
                                                                              saved.get("calculator"))):
            if now != then:
                differ = sorted(k for k in set(now) | set(then or {}) if now.get(k) != (then or {}).get(k))
                raise ValueError(f"quench: {directory} holds a run with another {name} (differs in "
                                 f"{', '.join(differ)}); resume it with what started it, use another directory, "
                                 "or start afresh with overwrite")
        _truncate_records(directory / "quench.csv", directory / "quench.traj", int(saved["step"]))
        return saved["atoms"], int(saved["step"]), saved["barostat"]
    _clear_stateless(directory, overwrite)
    atoms = relaxed_start(atoms, calc, protocol["relax_steps"])
    thermalize_momenta(atoms, temperature_K=protocol["t_melt"], rng=np.random.default_rng(protocol["seed"]))
    Stationary(atoms)
    return atoms, 0, None


def _clear_stateless(directory: Path, overwrite: bool) -> None:
    """Delete the files of a run in ``directory`` that cannot resume: on ``overwrite``, or where no state was saved
    (a run stopped before its first save, or its state files were removed). The records of a finished run are
    kept unless ``overwrite``: its state files are not worth keeping (``_saved_protocol``), and rerunning it
    would cost the whole run."""
    found = [directory / name for name in RUN_FILES if (directory / name).exists()]
    if not found:
        return
    records = all((directory / name).exists() for name in ("quench.csv", "log.txt"))
    if not overwrite and records and QuenchResult.load(directory).finished:
        raise ValueError(f"quench: {directory} holds a finished run without its saved state: read it with "
                         "QuenchResult.load (EnsembleQuenchResult.load for an ensemble's folder), or start afresh "
                         "with overwrite")
    for p in found:
        p.unlink()
    why = "overwrite" if overwrite else "no saved state to resume from:"
    print(f"quench: {why} deleted {', '.join(str(p) for p in found)}")


def relaxed_start(atoms, calc, steps: int):
    """A copy of ``atoms`` after at most ``steps`` FIRE steps at fixed cell (to forces below 0.2 eV/Å): a random
    start's overlapping atoms pulled apart before the MD (0 steps: the copy as it is)."""
    atoms = atoms.copy()
    if steps:
        from ase.optimize import FIRE

        atoms.calc = calc
        FIRE(atoms, logfile=None).run(fmax=0.2, steps=steps)
    return atoms


def _target(step: int, protocol: dict) -> float:
    p = protocol
    return float(protocol_temperature(step * p["timestep_fs"] / 1000.0, p["t_melt"], p["t_final"],
                                      p["cooling_rate"], p["melt_time"]))


def _dynamics(atoms, protocol: dict, start_step: int, barostat, t_tau: float, p_tau: float):
    """ASE's LangevinBAOAB NPT (isotropic), its noise seeded by the protocol's seed and the start step, its cell
    momentum and force those of a saved state (``barostat``; None: a fresh start)."""
    from ase import units
    from ase.md.langevinbaoab import LangevinBAOAB

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the barostat-mass heuristic announces itself
        dyn = LangevinBAOAB(atoms, protocol["timestep_fs"] * units.fs, temperature_K=_target(start_step, protocol),
                            externalstress=-protocol["pressure_bar"] * units.bar, hydrostatic=True,
                            T_tau=t_tau * units.fs, P_tau=p_tau * units.fs,
                            rng=np.random.default_rng([protocol["seed"], start_step]))
    if barostat is not None:
        dyn.p_eps, dyn.force_eps = barostat["p_eps"], barostat["force_eps"]
    return dyn


class _Records:
    """The files of a quench: ``quench.csv`` rows, ``quench.traj`` frames, the saved state and ``log.txt``."""

    def __init__(self, directory: Path, protocol: dict, fingerprint: dict, start_step: int, trajectory_interval: int):
        from ase.io import Trajectory

        self.directory, self.protocol, self.fingerprint, self.step = directory, protocol, fingerprint, start_step
        self.csv_path = directory / "quench.csv"
        new_csv = not self.csv_path.exists()
        self.fh = open(self.csv_path, "a", newline="")
        self.writer = csv.DictWriter(self.fh, fieldnames=_FIELDS)
        if new_csv:
            self.writer.writeheader()
        self.traj = Trajectory(directory / "quench.traj", "a") if trajectory_interval else None
        self.log = open(directory / "log.txt", "a")
        self.log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {'resumed at' if start_step else 'started'} step "
                       f"{start_step} of {protocol['n_steps']}: {json.dumps(protocol)}\n")
        self.log.flush()  # the protocol is on disk from the start: a run's records can be read without its state

    def __enter__(self):
        return self

    def row(self, values: dict) -> None:
        self.writer.writerow(values)

    def frame(self, atoms, step: int) -> None:
        atoms.info["step"] = step
        self.traj.write(atoms)

    def save_state(self, atoms, step: int, barostat: dict) -> None:
        """Commit: the rows and frames so far reach the disk, then the state (the point a resume starts from)."""
        self.fh.flush()
        os.fsync(self.fh.fileno())
        _save_state(self.directory, atoms, step, barostat, self.protocol, self.fingerprint)

    def __exit__(self, *exc):
        self.fh.close()
        if self.traj is not None:
            self.traj.close()
        self.log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} stopped at step {self.step}\n")
        self.log.close()


def _sample(atoms, step: int, protocol: dict) -> dict:
    """One ``quench.csv`` row of the current state (per-atom quantities, pressure in GPa)."""
    from ase import units

    p, n = protocol, len(atoms)
    t_ps = step * p["timestep_fs"] / 1000.0
    cool_end = p["melt_time"] + (p["t_melt"] - p["t_final"]) / p["cooling_rate"]
    stage = "melt" if t_ps <= p["melt_time"] else ("cool" if t_ps <= cool_end else "hold")
    epot, ekin, vol = atoms.get_potential_energy() / n, atoms.get_kinetic_energy() / n, atoms.get_volume() / n
    p_gpa = -atoms.get_stress(include_ideal_gas=True)[:3].mean() * _EV_PER_A3_TO_GPA
    return dict(step=step, time_ps=round(t_ps, 6), stage=stage, target_K=round(_target(step, p), 4),
                temperature_K=atoms.get_temperature(), volume_per_atom=vol, epot_per_atom=epot,
                ekin_per_atom=ekin, enthalpy_per_atom=epot + ekin + p["pressure_bar"] * units.bar * vol,
                pressure_GPa=p_gpa)


def _run_segment(dyn, atoms, records: _Records, protocol: dict, step: int, sample_interval: int,
                 trajectory_interval: int, checkpoint_interval: int, v_limit: float, show_progress: bool) -> None:
    """MD from ``step`` to the protocol's end: a row every ``sample_interval`` steps, frames, saved states."""
    from tqdm.auto import tqdm

    n_steps = protocol["n_steps"]
    with tqdm(total=n_steps, initial=step, unit="step", desc="quench", disable=not show_progress) as bar:
        while step < n_steps:
            dyn.set_temperature(_target(step, protocol))
            dyn.run(1)
            step += 1
            records.step = step
            bar.update(1)
            if step % sample_interval == 0:
                row = _sample(atoms, step, protocol)
                records.row(row)
                bar.set_postfix(T=f"{row['temperature_K']:.0f} K", V=f"{row['volume_per_atom']:.2f}")
                _check_expansion(row, v_limit, records.csv_path)
            if trajectory_interval and step % trajectory_interval == 0:
                records.frame(atoms, step)
            if step % checkpoint_interval == 0 or step == n_steps:
                records.save_state(atoms, step, {"p_eps": dyn.p_eps, "force_eps": dyn.force_eps})
                # the noise after a saved state depends on that state's step only, so a run resumed
                # from it continues exactly as the uninterrupted run does
                dyn.rng = np.random.default_rng([protocol["seed"], step])


def _check_expansion(row: dict, v_limit: float, csv_path: Path) -> None:
    """``RuntimeError`` when the volume passed ``v_limit`` (Å³/atom) or the energy is not finite."""
    vol, epot = row["volume_per_atom"], row["epot_per_atom"]
    if not (vol < v_limit and np.isfinite(epot)):
        raise RuntimeError(
            f"quench: at step {row['step']} ({row['temperature_K']:.0f} K) the volume reached {vol:.2f} Å^3/atom, "
            f"more than the limit of {v_limit:.2f} (max_expansion times the start), with E_pot {epot:.3f} eV/atom: "
            f"the system is evaporating, or the calculator is unstable at low density. The rows so far are in "
            f"{csv_path}")


def _truncate_records(csv_path: Path, traj_path: Path, last_step: int) -> None:
    """Drop rows and frames recorded after the saved state we resume from (and a row a kill cut short).

    Both files are rewritten atomically: a kill during the truncation leaves them as they were.
    """
    from ..files import atomic_write

    if csv_path.exists():
        with open(csv_path, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if None not in r.values() and _step(r) <= last_step]

        def write_rows(tmp):
            with open(tmp, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=_FIELDS)
                writer.writeheader()
                writer.writerows(rows)

        atomic_write(csv_path, write_rows)
    if traj_path.exists():
        from ase.io import Trajectory

        frames = [a for a in _readable_frames(traj_path) if a.info.get("step", 0) <= last_step]

        def write_frames(tmp):
            with Trajectory(tmp, "w") as t:
                for a in frames:
                    t.write(a)

        atomic_write(traj_path, write_frames)


def _step(row: dict) -> float:
    try:
        return float(row["step"])
    except ValueError:  # a row cut short by a kill
        return float("inf")


def _readable_frames(path: Path) -> list:
    """The frames of a trajectory up to the first one a kill cut short."""
    from ase.io import Trajectory

    frames = []
    try:
        with Trajectory(path) as traj:
            for k in range(len(traj)):
                frames.append(traj[k])
    except Exception:  # a frame cut short: keep those before it
        pass
    return frames
