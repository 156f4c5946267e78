"""Cooling-rate series: Tg against the cooling rate.

    series = quench_series(atoms, calc, rates=[400, 200, 100], replicas=4)   # K/ps
    series.tg("volume")               # per rate: GlassTransition (mean ± standard error over replicas)
    fit = series.rate_fit("volume")   # Tg = a + b log10(rate): b (K per decade) with its error
    series.plot("tg_vs_rate.png")

A slower quench gives the liquid more time to relax, so the glass falls out of
equilibrium at a lower temperature: Tg grows roughly linearly with the logarithm
of the cooling rate over the one or two decades MD reaches. Each rate is an
ordinary ``quench`` (an ensemble of ``replicas``) in ``directory/rate_<rate>``,
resumable on its own; the replicas of every rate start from the same structures
with the same seeds, so that the rates differ in the ramp only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import numpy as np

from .quench import load_quench, quench
from .tg import GlassTransition


@dataclass
class RateFit:
    """Tg = intercept + slope · log10(rate / K/ps), weighted by the errors of the Tg values.

    Attributes:
        slope, slope_error: K per decade of cooling rate.
        intercept, intercept_error: Tg (K) extrapolated to 1 K/ps.
        quantity, method: what was fitted, and how each Tg was found.
    """

    slope: float
    slope_error: float
    intercept: float
    intercept_error: float
    quantity: str
    method: str

    def __call__(self, rate) -> np.ndarray:
        """Tg (K) of the fit at ``rate`` (K/ps)."""
        return self.intercept + self.slope * np.log10(np.asarray(rate, dtype=float))

    def __str__(self) -> str:
        return (f"Tg from {self.quantity} ({self.method}) = {self.intercept:.0f} ± {self.intercept_error:.0f} K "
                f"+ ({self.slope:.0f} ± {self.slope_error:.0f} K) · log10(rate / 1 K/ps)")


class QuenchSeries:
    """Quenches of one system at several cooling rates: ``rates`` (K/ps, descending) and their ``results``."""

    def __init__(self, directory, rates: List[float], results: list):
        self.directory = Path(directory)
        self.rates = [float(r) for r in rates]
        self.results = list(results)

    @classmethod
    def load(cls, directory) -> "QuenchSeries":
        """The series in ``directory`` (its ``rate_*`` folders, finished or partial)."""
        directory = Path(directory)
        folders = sorted(directory.glob("rate_*"), key=lambda p: -float(p.name[len("rate_"):]))
        if not folders:
            raise FileNotFoundError(f"quench series: no rate_* folders in {directory}")
        return cls(directory, [float(p.name[len("rate_"):]) for p in folders], [load_quench(p) for p in folders])

    def tg(self, quantity: str = "volume", method: str = "hyperbola", **fit_options) -> Dict[float, GlassTransition]:
        """Tg per rate (``GlassTransition``; an ensemble's is the mean ± standard error over its replicas);
        rates whose curves give no Tg are left out. ``fit_options``: ``liquid_range``, ``glass_range`` (K) of the
        window fits."""
        out = {}
        for rate, result in zip(self.rates, self.results):
            try:
                out[rate] = result.glass_transition(quantity, method=method, **fit_options)
            except ValueError:
                continue
        return out

    def rate_fit(self, quantity: str = "volume", method: str = "hyperbola", **fit_options) -> RateFit:
        """The straight line of Tg against log10(rate), weighted by 1/error² (``ValueError`` under 2 rates)."""
        tgs = self.tg(quantity, method, **fit_options)
        if len(tgs) < 2:
            raise ValueError(f"quench series: Tg from {quantity} at {len(tgs)} rate(s); a fit needs at least 2")
        x = np.log10(list(tgs))
        y = np.array([t.tg for t in tgs.values()])
        errors = np.array([t.error for t in tgs.values()])
        weights = 1.0 / np.maximum(errors, 1e-6 * max(abs(y).max(), 1.0)) ** 2 if np.all(np.isfinite(errors)) \
            else np.ones_like(y)
        design = np.column_stack([np.ones_like(x), x])
        covariance = np.linalg.pinv(design.T @ (weights[:, None] * design))
        intercept, slope = covariance @ design.T @ (weights * y)
        if len(tgs) > 2:  # scale by the scatter about the line (reduced chi²), as errors may be understated
            chi2 = float(np.sum(weights * (y - intercept - slope * x) ** 2)) / (len(tgs) - 2)
            covariance = covariance * max(chi2, 1.0)
        return RateFit(float(slope), float(np.sqrt(covariance[1, 1])), float(intercept),
                       float(np.sqrt(covariance[0, 0])), quantity, method)

    def summary(self, method: str = "hyperbola") -> dict:
        """Plain values: per rate, Tg from V(T) and H(T) (K, errors, per replica); the fits against log rate."""
        out = {"rates_K_per_ps": self.rates, "method": method}
        for quantity in ("volume", "enthalpy"):
            tgs = self.tg(quantity, method)
            out[f"tg_{quantity}"] = {f"{rate:g}": {"tg_K": t.tg, "error_K": t.error, "per_replica_K": list(t.per_replica)}
                                     for rate, t in tgs.items()}
            try:
                fit = self.rate_fit(quantity, method)
                out[f"rate_fit_{quantity}"] = {"K_per_decade": fit.slope, "K_per_decade_error": fit.slope_error,
                                               "tg_at_1_K_per_ps": fit.intercept, "error_K": fit.intercept_error}
            except ValueError as exc:
                out[f"rate_fit_{quantity}"] = {"error": str(exc)}
        return out

    def plot(self, path=None, method: str = "hyperbola", ax=None, **fit_options):
        """Tg from V(T) and H(T) against the cooling rate (log axis) with the fitted lines; returns the
        ``Figure`` (saved to ``path`` if given)."""
        from ..plotting import new_figure, save_figure

        if ax is None:
            _, ax = new_figure(size=(6.0, 4.5))
        for k, (quantity, marker) in enumerate((("volume", "o"), ("enthalpy", "s"))):
            tgs = self.tg(quantity, method, **fit_options)
            if not tgs:
                continue
            rates = np.array(list(tgs)) * (1.0 + 0.03 * (2 * k - 1))  # side by side, not on top of each other
            ax.errorbar(rates, [t.tg for t in tgs.values()], yerr=[t.error for t in tgs.values()], fmt=marker,
                        color=f"C{k}", capsize=3, label=f"from {quantity}")
            try:
                fit = self.rate_fit(quantity, method, **fit_options)
            except ValueError:
                continue
            grid = np.geomspace(min(self.rates) / 1.5, max(self.rates) * 1.5, 50)
            ax.plot(grid, fit(grid), "--", color=f"C{k}", lw=1,
                    label=f"{fit.slope:.0f} ± {fit.slope_error:.0f} K per decade")
        ax.set_xscale("log")
        ax.set_xlim(min(self.rates) / 2, max(self.rates) * 2)
        ax.set_xlabel("cooling rate (K/ps)")
        ax.set_ylabel("Tg (K)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(frameon=False, fontsize=8)
        else:
            ax.text(0.5, 0.5, f"no Tg ({method} fit) at any rate", ha="center", transform=ax.transAxes)
        if path is not None:
            save_figure(ax.figure, path)
        return ax.figure


def quench_series(atoms, calc, rates, replicas: int = 1, directory="quench_series", show_progress: bool = True,
                  **protocol) -> QuenchSeries:
    """``quench`` at each cooling rate of ``rates`` (K/ps), an ensemble of ``replicas`` each, in
    ``directory/rate_<rate>``; ``protocol``: the other arguments of ``quench`` (temperatures, times, seed...).

    Rates run from the fastest (cheapest) down, so that a series stopped early has its fast end. A folder that
    holds a rate's run resumes it (``overwrite=True`` starts every rate afresh).
    """
    rates = _checked_rates(rates)
    if "cooling_rate" in protocol:
        raise ValueError("quench_series: give the cooling rates as rates=[...], not cooling_rate")
    directory = Path(directory)
    results = []
    for k, rate in enumerate(rates):
        if show_progress:
            print(f"cooling rate {rate:g} K/ps ({k + 1} of {len(rates)})", flush=True)
        results.append(quench(atoms, calc, cooling_rate=rate, replicas=replicas, directory=directory / f"rate_{rate:g}",
                              show_progress=show_progress, **protocol))
    return QuenchSeries(directory, rates, results)


def _checked_rates(rates) -> List[float]:
    try:
        rates = [float(r) for r in rates]
    except (TypeError, ValueError):
        raise ValueError(f"quench_series: rates must be numbers (K/ps), got {rates!r}") from None
    values = sorted(set(rates), reverse=True)
    if not values or not all(np.isfinite(values)) or min(values) <= 0:
        raise ValueError(f"quench_series: rates must be positive and finite (K/ps), got {rates!r}")
    if len(values) != len(rates):
        raise ValueError(f"quench_series: a rate is given twice in {rates!r}")
    return values


__all__ = ["quench_series", "QuenchSeries", "RateFit"]
