"""The glass transition temperature from a kinked curve y(T) (volume, enthalpy), one run or an ensemble.

    tg = fit_glass_transition(T, V)                          # two straight-line windows, their crossing
    tg = fit_glass_transition(T, V, method="hyperbola")      # the whole curve, no windows to choose
    tg = ensemble_glass_transition([(T1, V1), (T2, V2), ...]) # per replica, then mean ± standard error
    tg = pooled_glass_transition([(T1, V1), (T2, V2), ...])   # the replicas' mean curve, jackknife error

Windows: straight lines fitted to the liquid branch and the glass branch, Tg
where they cross, with a bootstrap error; the result depends on the windows.
Hyperbola: the whole curve is fitted with

    y(T) = a + b (T - T0) + c sqrt((T - T0)^2 / 4 + d)

whose asymptotes are the two branches (slopes b + c/2 above, b - c/2 below),
crossing at T0 = Tg; ``d`` sets how sharp the kink is. Its error is the standard
error of T0 from the fit's covariance. One run's error understates the run-to-run
scatter of MD (chaos): an ensemble of independent replicas gives Tg as the mean
of the per-replica values and its standard error. Where a small replica's kink
is lost in its noise, the replicas' mean curve (the curve of one system holding
all their atoms) is fitted instead, with the jackknife error over the replicas.
Temperatures in K.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Optional, Sequence, Tuple

import numpy as np

__all__ = ["GlassTransition", "fit_glass_transition", "ensemble_glass_transition", "pooled_glass_transition",
           "tg_resolved", "hyperbola"]


@dataclass
class GlassTransition:
    """Tg from the intersection of straight-line fits to the liquid and glass branches.

    Attributes:
        tg: glass transition temperature, K.
        error: uncertainty of ``tg`` (K): bootstrap standard deviation (windows), standard error of the
            fitted T0 (hyperbola), standard error of the mean over replicas (ensemble), or jackknife
            standard error over the replicas (their mean curve).
        liquid_range, glass_range: temperature ranges (K) of the two fits (hyperbola: the data above and
            below Tg).
        liquid_fit, glass_fit: (slope, intercept) of ``y = slope * T + intercept``: the branches.
        quantity: what was fitted.
        method: ``"windows"`` or ``"hyperbola"``.
        per_replica: Tg (K) of each replica used, for an ensemble result; empty otherwise.
        replicas: the ensemble's replicas, those left out included (0 for a single curve; for a mean
            curve, the replicas averaged, with ``per_replica`` empty).
    """

    tg: float
    error: float
    liquid_range: Tuple[float, float]
    glass_range: Tuple[float, float]
    liquid_fit: Tuple[float, float]
    glass_fit: Tuple[float, float]
    quantity: str = ""
    method: str = "windows"
    per_replica: Tuple[float, ...] = ()
    replicas: int = 0

    def resolved(self, t_min: float, t_max: float) -> bool:
        """Whether the fits found a kink (``tg_resolved``)."""
        return tg_resolved(self.tg, self.error, t_min, t_max)

    def replicas_used(self) -> str:
        """How many replicas gave this ensemble Tg: ``"4"``, or ``"3 of 4"`` when some were left out."""
        used = len(self.per_replica)
        return f"{used} of {self.replicas}" if self.replicas > used else f"{used}"

    def __str__(self) -> str:
        where = f"{self.quantity or 'y'}(T)"
        if self.per_replica:
            return (f"Tg = {self.tg:.0f} ± {self.error:.0f} K from {where}, mean ± standard error over "
                    f"{self.replicas_used()} replicas ({self.method} fits)")
        if self.replicas:
            return (f"Tg = {self.tg:.0f} ± {self.error:.0f} K from the mean {where} of {self.replicas} replicas "
                    f"({self.method} fit, jackknife error)")
        if self.method == "hyperbola":
            return f"Tg = {self.tg:.0f} ± {self.error:.0f} K from {where} (hyperbolic fit of the whole curve)"
        return (f"Tg = {self.tg:.0f} ± {self.error:.0f} K from {where} "
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


def _points(t, y):
    t = np.asarray(t, dtype=float)
    y = np.asarray(y, dtype=float)
    if t.shape != y.shape or t.ndim != 1:
        raise ValueError("fit_glass_transition: T and y must be 1-d arrays of equal length")
    ok = np.isfinite(t) & np.isfinite(y)
    if ok.sum() < 6:
        raise ValueError(f"fit_glass_transition: need at least 6 finite points, got {int(ok.sum())}")
    return t[ok], y[ok]


def fit_glass_transition(t, y, liquid_range: Optional[Tuple[float, float]] = None,
                         glass_range: Optional[Tuple[float, float]] = None, n_bootstrap: int = 500,
                         seed: int = 0, quantity: str = "", method: str = "windows") -> GlassTransition:
    """Tg of any ``y(T)`` curve with a kink (volume, enthalpy...).

    ``method="windows"``: straight lines are fitted to the liquid branch
    (``liquid_range``, K) and the glass branch (``glass_range``); Tg is where they
    cross. Without ranges, the liquid range is the top 30 % and the glass range the
    bottom 30 % of the temperature span. The error is the standard deviation of Tg
    over ``n_bootstrap`` resamples (with replacement) of the points in each range.

    ``method="hyperbola"``: the whole curve (see the module), no ranges.
    """
    if method == "hyperbola":
        return _fit_hyperbola(*_points(t, y), quantity)
    if method != "windows":
        raise ValueError(f"fit_glass_transition: method must be 'windows' or 'hyperbola', got {method!r}")
    t, y = _points(t, y)
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




def hyperbola(t, a, b, c, t0, d):
    """``a + b (T - T0) + c sqrt((T - T0)^2 / 4 + d)``: two straight branches crossing at T0, joined smoothly."""
    x = np.asarray(t, dtype=float) - t0
    return a + b * x + c * np.sqrt(x * x / 4.0 + d)


def _fit_hyperbola(t, y, quantity: str) -> GlassTransition:
    """Least-squares hyperbola through all points, started from the windows' crossing."""
    from scipy.optimize import curve_fit

    start = fit_glass_transition(t, y, n_bootstrap=0)
    (sl, il), (sg, _) = start.liquid_fit, start.glass_fit
    lo, hi = float(t.min()), float(t.max())
    t0 = start.tg if lo < start.tg < hi else 0.5 * (lo + hi)
    scale = (hi - lo) / 10.0  # width of the kink region, K
    p0 = [sl * t0 + il, 0.5 * (sl + sg), sl - sg, t0, scale ** 2]
    bounds = ([-np.inf, -np.inf, -np.inf, lo, 1e-6], [np.inf, np.inf, np.inf, hi, (hi - lo) ** 2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            p, cov = curve_fit(hyperbola, t, y, p0=p0, bounds=bounds, maxfev=20000)
        except RuntimeError:  # no convergence: no kink to be found
            return replace(start, tg=float("nan"), error=float("nan"), method="hyperbola", quantity=quantity)
    a, b, c, tg, _ = p
    error = float(np.sqrt(cov[3, 3])) if np.isfinite(cov[3, 3]) else float("nan")
    liquid = (b + c / 2, a - (b + c / 2) * tg)
    glass = (b - c / 2, a - (b - c / 2) * tg)
    return GlassTransition(tg=float(tg), error=error, liquid_range=(float(tg), hi), glass_range=(lo, float(tg)),
                           liquid_fit=tuple(map(float, liquid)), glass_fit=tuple(map(float, glass)),
                           quantity=quantity, method="hyperbola")


def ensemble_glass_transition(curves: Sequence[Tuple[Sequence[float], Sequence[float]]], quantity: str = "",
                              method: str = "hyperbola", **fit_options) -> GlassTransition:
    """Tg of an ensemble: each replica's ``(T, y)`` fitted alone, then the mean and its standard error.

    The branches of the result are the mean of the replicas' branches; ``per_replica`` holds the Tg of every
    replica used. A replica whose fit put Tg outside its own temperature span (parallel branches that cross
    far away: no kink in that replica's noise), or whose curve cannot be fitted (too few points in a range),
    is left out, and ``replicas`` says how many there were; fewer than two left is an error.
    """
    good, reasons = [], []
    for t, y in curves:
        try:
            fit = fit_glass_transition(t, y, quantity=quantity, method=method, **fit_options)
        except ValueError as exc:  # this replica's curve cannot be fitted: left out like one without a kink
            reasons.append(str(exc))
            continue
        lo, hi = np.nanmin(np.asarray(t, dtype=float)), np.nanmax(np.asarray(t, dtype=float))
        if np.isfinite(fit.tg) and lo <= fit.tg <= hi:
            good.append(fit)
    if len(good) < 2:
        why = f" ({reasons[0]})" if reasons else ""
        raise ValueError(f"ensemble_glass_transition: {len(good)} of {len(curves)} replicas gave a Tg inside their "
                         f"temperature range; need two{why}")
    tgs = np.array([f.tg for f in good])
    mean = lambda pairs: tuple(float(v) for v in np.mean(np.array(pairs), axis=0))  # noqa: E731
    return GlassTransition(tg=float(tgs.mean()), error=float(tgs.std(ddof=1) / np.sqrt(len(tgs))),
                           liquid_range=mean([f.liquid_range for f in good]),
                           glass_range=mean([f.glass_range for f in good]),
                           liquid_fit=mean([f.liquid_fit for f in good]), glass_fit=mean([f.glass_fit for f in good]),
                           quantity=quantity, method=method, per_replica=tuple(float(v) for v in tgs),
                           replicas=len(curves))


def pooled_glass_transition(curves: Sequence[Tuple[Sequence[float], Sequence[float]]], quantity: str = "",
                            method: str = "windows", **fit_options) -> GlassTransition:
    """Tg of an ensemble's mean curve: the replicas' ``(T, y)`` averaged point by point and fitted once.

    The mean curve is that of one system holding all the replicas' atoms, so its kink stands out of the noise
    where single small replicas' do not, and no replica is left out. The error is the jackknife standard error
    over the replicas (the mean curve refitted with each left out in turn). The replicas' points must match
    one to one, as the temperature windows of one quench protocol do. ``fit_options``: those of
    ``fit_glass_transition`` (ranges for ``method="windows"``).
    """
    if len(curves) < 2:
        raise ValueError(f"pooled_glass_transition: needs two or more curves, got {len(curves)}")
    t, y = _stacked(curves)
    options = {**fit_options, "quantity": quantity, "method": method, "n_bootstrap": 0}
    full = fit_glass_transition(*mean_curve(curves), **options)
    n = len(curves)
    left_out = np.array([fit_glass_transition(np.delete(t, k, 0).mean(axis=0), np.delete(y, k, 0).mean(axis=0),
                                              **options).tg for k in range(n)])
    error = float(np.sqrt((n - 1) / n * np.sum((left_out - left_out.mean()) ** 2)))
    return replace(full, error=error, replicas=n)


def mean_curve(curves: Sequence[Tuple[Sequence[float], Sequence[float]]]) -> Tuple[np.ndarray, np.ndarray]:
    """The replicas' ``(T, y)`` curves averaged point by point: ``(T, y)``, each the mean over the curves (their
    points must match one to one, as the temperature windows of one quench protocol do)."""
    t, y = _stacked(curves)
    return t.mean(axis=0), y.mean(axis=0)


def _stacked(curves) -> Tuple[np.ndarray, np.ndarray]:
    """The curves' temperatures and values as two (curves, points) arrays; ValueError unless all have one shape."""
    shapes = {np.shape(t) for t, _ in curves} | {np.shape(y) for _, y in curves}
    if not curves or len(shapes) != 1:
        raise ValueError(f"curves of equal length needed, got {len(curves)} of shapes {sorted(shapes)}")
    return (np.array([np.asarray(c[0], dtype=float) for c in curves]),
            np.array([np.asarray(c[1], dtype=float) for c in curves]))
