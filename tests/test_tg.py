"""Tg fits on synthetic curves whose Tg is known: noise, curved branches, weak kinks, ensembles."""
import numpy as np
import pytest

from equicalc.analysis import fit_glass_transition
from equicalc.analysis.tg import ensemble_glass_transition, hyperbola, mean_curve, pooled_glass_transition

T = np.linspace(300.0, 2000.0, 35)  # 50 K windows of a 300–2000 K quench


def volume_curve(tg=800.0, glass=5e-4, liquid=1.2e-3, curvature=0.0, width=30.0, noise=0.0, seed=0):
    """V(T) (Å³/atom) with branches of the given slopes crossing at ``tg``, a liquid branch bent by
    ``curvature`` (per K²), a kink rounded over ``width`` K, and Gaussian noise."""
    y = hyperbola(T, 16.5, 0.5 * (glass + liquid), liquid - glass, tg, width ** 2)
    y = y + curvature * np.clip(T - tg, 0, None) ** 2
    return y + np.random.default_rng(seed).normal(scale=noise, size=T.shape)


def test_hyperbola_recovers_tg_and_branches_of_a_noisy_curve():
    tg = fit_glass_transition(T, volume_curve(noise=0.004, seed=1), method="hyperbola", quantity="volume")
    assert tg.method == "hyperbola" and tg.tg == pytest.approx(800.0, abs=max(3 * tg.error, 15.0))
    assert 0 < tg.error < 60
    assert tg.liquid_fit[0] == pytest.approx(1.2e-3, rel=0.1) and tg.glass_fit[0] == pytest.approx(5e-4, rel=0.2)
    assert tg.resolved(300, 2000) and "hyperbolic fit" in str(tg)


def test_hyperbola_needs_no_windows_where_windows_mislead():
    """A liquid branch that bends: windows too high see a steeper line and move Tg; the hyperbola,
    fitted everywhere, stays closer to the kink."""
    y = volume_curve(curvature=3e-7, noise=0.002, seed=2)
    by_windows = fit_glass_transition(T, y, liquid_range=(1600, 2000), glass_range=(300, 600))
    by_hyperbola = fit_glass_transition(T, y, method="hyperbola")
    assert abs(by_hyperbola.tg - 800.0) < abs(by_windows.tg - 800.0)
    assert abs(by_hyperbola.tg - 800.0) < 60.0


def test_a_weak_kink_gives_a_large_error():
    strong = fit_glass_transition(T, volume_curve(noise=0.004, seed=3), method="hyperbola")
    weak = fit_glass_transition(T, volume_curve(liquid=5.6e-4, noise=0.004, seed=3), method="hyperbola")
    assert weak.error > 3 * strong.error or not weak.resolved(300, 2000)


def test_ensemble_mean_and_standard_error_cover_the_truth():
    curves = [(T, volume_curve(noise=0.006, seed=10 + k)) for k in range(8)]
    tg = ensemble_glass_transition(curves, quantity="volume")
    per = np.array(tg.per_replica)
    assert len(per) == 8 and tg.tg == pytest.approx(per.mean())
    assert tg.error == pytest.approx(per.std(ddof=1) / np.sqrt(8))
    assert abs(tg.tg - 800.0) < 3 * tg.error + 5.0
    assert "mean ± standard error over 8 replicas" in str(tg)
    with pytest.raises(ValueError, match="need two"):
        ensemble_glass_transition(curves[:1])
    # a replica whose branches cross far outside its temperatures (no kink in its noise) is left out, and said so
    flat = (T, 0.001 * T + 0.002 * np.sign(T - T.mean()))  # parallel branches: no crossing near the data
    tg_flat = ensemble_glass_transition(curves[:3] + [flat], quantity="volume", method="windows")
    assert len(tg_flat.per_replica) == 3 and tg_flat.replicas == 4
    assert "over 3 of 4 replicas" in str(tg_flat)
    # so is a replica whose curve cannot be fitted at all (too few points)
    short = (T[:4], curves[3][1][:4])
    assert ensemble_glass_transition(curves[:2] + [short], method="windows").replicas == 3
    with pytest.raises(ValueError, match=r"1 of 2 replicas gave a Tg.*need two \(fit_glass_transition"):
        ensemble_glass_transition(curves[:1] + [short], method="windows")


def test_the_mean_curve_of_small_noisy_replicas_finds_the_kink_they_lose_alone():
    """Replicas so noisy that some of them show no kink alone: their mean curve has one, near the truth, and
    its jackknife error is of the size of the scatter of such mean curves."""
    def ensemble(seed):
        return [(T, volume_curve(noise=0.1, seed=seed + k)) for k in range(16)]

    alone = ensemble_glass_transition(ensemble(100), method="windows", liquid_range=(1200, 2000),
                                      glass_range=(300, 700))
    assert len(alone.per_replica) < 16  # some replicas' branches cross outside their temperatures
    tg = pooled_glass_transition(ensemble(100), quantity="volume", liquid_range=(1200, 2000), glass_range=(300, 700))
    assert tg.replicas == 16 and tg.per_replica == () and "mean volume(T) of 16 replicas" in str(tg)
    assert abs(tg.tg - 800.0) < 3 * tg.error and 0 < tg.error < 100
    scatter = np.std([pooled_glass_transition(ensemble(200 + 16 * k), liquid_range=(1200, 2000),
                                              glass_range=(300, 700)).tg for k in range(12)])
    assert 0.5 * scatter < tg.error < 2.0 * scatter
    alike = [(T, volume_curve(noise=0.004, seed=1))] * 3  # identical replicas: nothing to scatter
    assert pooled_glass_transition(alike, method="hyperbola").error == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="curves of equal length"):
        pooled_glass_transition([(T, volume_curve()), (T[:-1], volume_curve()[:-1])])
    with pytest.raises(ValueError, match="two or more curves"):
        pooled_glass_transition([(T, volume_curve())])


def test_mean_curve_averages_point_by_point():
    a, b = volume_curve(noise=0.01, seed=1), volume_curve(noise=0.01, seed=2)
    t, y = mean_curve([(T, a), (T + 2.0, b)])
    np.testing.assert_allclose(t, T + 1.0)
    np.testing.assert_allclose(y, (a + b) / 2)
    with pytest.raises(ValueError, match="curves of equal length"):
        mean_curve([])


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="method must be"):
        fit_glass_transition(T, volume_curve(), method="spline")
    with pytest.raises(ValueError, match="at least 6 finite points"):
        fit_glass_transition(T[:4], volume_curve()[:4], method="hyperbola")


def test_volume_and_enthalpy_agreement_is_stated():
    import importlib

    qmod = importlib.import_module("equicalc.analysis.quench")
    close = fit_glass_transition(T, volume_curve(noise=0.004, seed=4), method="hyperbola")
    other = fit_glass_transition(T, volume_curve(tg=1300.0, noise=0.004, seed=5), method="hyperbola")
    assert qmod._volume_and_enthalpy_agree(close, close) is True
    assert qmod._volume_and_enthalpy_agree(close, other) is False
    assert qmod._volume_and_enthalpy_agree(close, None) is None
