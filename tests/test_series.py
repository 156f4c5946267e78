"""Cooling-rate series: Tg against log rate, from synthetic Tg values and from real (EMT) quenches."""
import json

import numpy as np
import pytest
from ase.calculators.emt import EMT

from conftest import SHORT_QUENCH, cu_au_alloy
from equicalc.analysis import QuenchSeries, load_quench, quench_series
from equicalc.analysis.tg import GlassTransition


class _Known:
    """A stand-in result whose Tg is given (K, error K)."""

    def __init__(self, tg, error):
        self.tg, self.error = tg, error

    def glass_transition(self, quantity, method="hyperbola"):
        if self.tg is None:
            raise ValueError("no kink")
        return GlassTransition(self.tg, self.error, (0, 0), (0, 0), (0, 0), (0, 0), quantity, method)


def test_the_rate_fit_recovers_a_known_log_law():
    rates = [1000.0, 300.0, 100.0, 30.0, 10.0]
    rng = np.random.default_rng(0)
    truth = 700.0 + 60.0 * np.log10(rates)  # 60 K per decade, 700 K at 1 K/ps
    series = QuenchSeries("x", rates, [_Known(t + rng.normal(0, 5.0), 5.0) for t in truth])
    fit = series.rate_fit("volume")
    assert fit.slope == pytest.approx(60.0, abs=3 * fit.slope_error) and 1.0 < fit.slope_error < 10.0
    assert fit.intercept == pytest.approx(700.0, abs=3 * fit.intercept_error)
    np.testing.assert_allclose(fit(rates), fit.intercept + fit.slope * np.log10(rates))
    assert "K) · log10(rate / 1 K/ps)" in str(fit)
    # scatter far beyond the stated errors widens the fit's error (reduced chi²), it does not hide it
    noisy = QuenchSeries("x", rates, [_Known(t + d, 1.0) for t, d in zip(truth, [60, -60, 60, -60, 60])])
    assert noisy.rate_fit().slope_error > 10.0
    # a rate without a Tg is left out; fewer than two rates is no fit
    partial = QuenchSeries("x", [100.0, 10.0], [_Known(800.0, 10.0), _Known(None, 0.0)])
    assert list(partial.tg()) == [100.0]
    with pytest.raises(ValueError, match="at 1 rate"):
        partial.rate_fit()
    summary = partial.summary()
    assert summary["tg_volume"]["100"]["tg_K"] == 800.0 and "error" in summary["rate_fit_volume"]


def test_bad_rates_are_refused(tmp_path):
    for rates, match in (([], "positive"), ([100.0, -1.0], "positive"), ([100.0, 100], "twice"), (["fast"], "numbers")):
        with pytest.raises(ValueError, match=match):
            quench_series(cu_au_alloy(), EMT(), rates, directory=tmp_path)
    with pytest.raises(ValueError, match="rates="):
        quench_series(cu_au_alloy(), EMT(), [100.0], directory=tmp_path, cooling_rate=50.0)


@pytest.mark.slow
def test_a_series_of_emt_ensembles_runs_resumes_and_reloads(tmp_path):
    protocol = {k: v for k, v in SHORT_QUENCH.items() if k != "cooling_rate"}
    starts = [cu_au_alloy(0), cu_au_alloy(1)]
    series = quench_series(starts, EMT(), [3000.0, 6000.0], replicas=2, directory=tmp_path, **protocol)
    assert series.rates == [6000.0, 3000.0]  # the fast (cheap) rate first
    for rate, result in zip(series.rates, series.results):
        assert result.protocol["cooling_rate"] == rate and len(result.replicas) == 2
        assert (tmp_path / f"rate_{rate:g}" / "replica_1" / "quench.csv").exists()
    # the replicas of both rates share their starts and seeds: identical until the ramp begins
    fast, slow = (r.replicas[0].data for r in series.results)
    melt = fast["time_ps"] <= SHORT_QUENCH["melt_time"]
    np.testing.assert_array_equal(fast["volume_per_atom"][melt], slow["volume_per_atom"][:melt.sum()])
    loaded = QuenchSeries.load(tmp_path)
    assert loaded.rates == series.rates
    assert json.dumps(loaded.summary()) == json.dumps(series.summary())
    again = quench_series(starts, EMT(), [3000.0, 6000.0], replicas=2, directory=tmp_path, **protocol)  # resumes: done
    for a, b in zip(again.results, series.results):
        np.testing.assert_array_equal(a.replicas[1].data["enthalpy_per_atom"], b.replicas[1].data["enthalpy_per_atom"])
    fig = series.plot(tmp_path / "series.png", method="windows")
    assert (tmp_path / "series.png").stat().st_size > 1000 and fig.axes[0].get_xscale() == "log"
    assert type(load_quench(tmp_path / "rate_3000")).__name__ == "EnsembleQuenchResult"
    with pytest.raises(FileNotFoundError, match="rate_"):
        QuenchSeries.load(tmp_path / "rate_3000")
