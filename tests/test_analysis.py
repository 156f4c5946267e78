"""Analysis helpers: RDF, S(q), glass-transition fits, the quench protocol."""
import itertools

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT

from equicalc.analysis import fit_glass_transition, quench, rdf
from equicalc.analysis.quench import QuenchResult, protocol_temperature


def random_triclinic(n, seed, species=("Cu", "Zr")):
    rng = np.random.default_rng(seed)
    cell = np.diag(rng.uniform(6.0, 8.0, 3)) + rng.uniform(-1.5, 1.5, (3, 3)) * (1 - np.eye(3))
    frac = rng.random((n, 3))
    symbols = rng.choice(species, n)
    return Atoms(symbols, scaled_positions=frac, cell=cell, pbc=True)


def brute_force_counts(atoms, r_max, nbins, sp_a, sp_b):
    """Ordered pair counts (i of sp_a, j != i of sp_b) over explicit periodic images."""
    cell = atoms.cell.array
    heights = atoms.get_volume() / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    reps = [int(np.ceil(r_max / h)) for h in heights]
    sym = np.array(atoms.get_chemical_symbols())
    counts = np.zeros(nbins)
    for s in itertools.product(*[range(-k, k + 1) for k in reps]):
        shift = np.array(s) @ cell
        d = np.linalg.norm(atoms.positions[None, :, :] + shift - atoms.positions[:, None, :], axis=-1)
        mask = (sym[:, None] == sp_a) & (sym[None, :] == sp_b)
        if s == (0, 0, 0):
            np.fill_diagonal(mask, False)
        d = d[mask & (d < r_max)]
        counts += np.bincount((d / r_max * nbins).astype(int), minlength=nbins)[:nbins]
    return counts


def test_rdf_equals_brute_force_on_triclinic_cells():
    r_max, nbins = 9.0, 45  # beyond half of the box
    for seed in range(3):
        atoms = random_triclinic(30, seed)
        res = rdf(atoms, r_max=r_max, nbins=nbins)
        shell = 4 / 3 * np.pi * (res.edges[1:] ** 3 - res.edges[:-1] ** 3)
        sym = atoms.get_chemical_symbols()
        v = atoms.get_volume()
        for a, b in [("Cu", "Cu"), ("Cu", "Zr"), ("Zr", "Zr")]:
            na, nb = sym.count(a), sym.count(b)
            expected = brute_force_counts(atoms, r_max, nbins, a, b) * v / (na * (nb - (a == b)) * shell)
            np.testing.assert_allclose(res.partial[(a, b)], expected, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(res.g(b, a), expected, rtol=1e-10, atol=1e-12)
        n = len(atoms)
        total = sum(brute_force_counts(atoms, r_max, nbins, a, b) for a in ("Cu", "Zr") for b in ("Cu", "Zr"))
        np.testing.assert_allclose(res.total, total * v / (n * (n - 1) * shell), rtol=1e-10)


def test_ideal_gas_rdf_is_one():
    frames = [random_triclinic(200, seed) for seed in range(20)]
    res = rdf(frames, r_max=6.0, nbins=12)
    np.testing.assert_allclose(res.total[2:], 1.0, atol=0.05)
    for g in res.partial.values():
        np.testing.assert_allclose(g[3:], 1.0, atol=0.12)
    assert res.n_frames == 20 and set(res.partial) == {("Cu", "Cu"), ("Cu", "Zr"), ("Zr", "Zr")}


def test_peak_position_fits_a_noisy_flat_top():
    from equicalc.analysis.rdf import peak_position

    r = np.arange(0.01, 6.0, 0.02)
    centre = 2.757  # between bin centres
    clean = 1 + 2.0 * np.exp(-0.5 * ((r - centre) / 0.2) ** 2)
    rng = np.random.default_rng(0)
    fitted, highest = [], []
    for _ in range(50):
        g = clean + rng.normal(0, 0.03, r.size)
        fitted.append(peak_position(r, g))
        highest.append(r[np.argmax(g)])
    assert np.abs(np.array(fitted) - centre).max() < 0.01  # the highest bin alone wanders by several bins
    assert np.abs(np.array(highest) - centre).max() > 0.02
    assert peak_position(r, clean) == pytest.approx(centre, abs=2e-3)
    spike = np.zeros_like(r)
    spike[100] = 5.0
    assert peak_position(r, spike) == pytest.approx(r[100])


def test_crystal_rdf_peaks_and_coordination():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (3, 3, 3)
    res = rdf(atoms, r_max=5.0, nbins=250)
    assert res.first_peak()["total"] == pytest.approx(3.6 / np.sqrt(2), abs=0.02)
    cn = res.coordination_numbers(r_cut=3.0)
    assert cn[("Cu", "Cu")] == pytest.approx(12.0)
    assert cn[("all", "all")] == pytest.approx(12.0)


def test_structure_factor_is_the_fourier_transform_of_g(tmp_path):
    # a soft-sphere-like liquid structure: rattled fcc with species disorder
    rng = np.random.default_rng(0)
    frames = []
    for k in range(10):
        atoms = bulk("Cu", "fcc", a=3.7, cubic=True) * (4, 4, 4)
        atoms.numbers[rng.random(len(atoms)) < 0.36] = 40
        atoms.positions += rng.normal(scale=0.35, size=atoms.positions.shape)
        frames.append(atoms)
    res = rdf(frames, r_max=7.0, nbins=70)
    q = np.linspace(0.3, 30.0, 3000)
    sq = res.structure_factor(q, window="none")
    # invert: g(r) = 1 + 1/(2 pi^2 rho r) int q (S(q) - 1) sin(qr) dq
    r = res.r[20:50]
    dq = q[1] - q[0]
    g_back = 1 + (np.sin(np.outer(r, q)) * q * (sq.total - 1)).sum(1) * dq / (2 * np.pi ** 2 * res.density * r)
    np.testing.assert_allclose(g_back, res.total[20:50], atol=0.05)
    # partials combine to the total, S - 1 = sum_ab sqrt(c_a c_b) (S_ab - delta_ab), up to the
    # finite-size difference of the N_a (N_b - delta_ab) and N (N - 1) normalisations
    c = res.concentrations
    combo = 0.0
    for (a, b), s in sq.partial.items():
        w = 1.0 if a == b else 2.0
        combo = combo + w * np.sqrt(c[a] * c[b]) * (s - float(a == b))
    np.testing.assert_allclose(1 + combo, sq.total, atol=5e-3)
    ax = sq.plot(path=tmp_path / "sq.png")
    assert ax.get_xlabel() == "q (1/Å)" and len(ax.lines) == 1 + len(sq.partial) + 1  # total, partials, S = 1
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), sq.total)
    assert (tmp_path / "sq.png").stat().st_size > 1000


def test_rdf_errors(tmp_path):
    with pytest.raises(ValueError, match="not fully periodic"):
        rdf(Atoms("Cu2", positions=[[0, 0, 0], [2, 0, 0]]))
    with pytest.raises(FileNotFoundError):
        rdf(str(tmp_path / "nope.traj"))


def test_fit_glass_transition_recovers_the_kink():
    rng = np.random.default_rng(1)
    t = np.linspace(300, 1500, 49)
    tg_true = 720.0
    v = np.where(t > tg_true, 16.0 + 1.2e-3 * (t - tg_true), 16.0 + 0.5e-3 * (t - tg_true))
    v_noisy = v + rng.normal(scale=2e-3, size=t.size)
    fit = fit_glass_transition(t, v_noisy, liquid_range=(1000, 1500), glass_range=(300, 600))
    assert abs(fit.tg - tg_true) < 3 * fit.error + 5
    assert 0 < fit.error < 40
    assert fit.liquid_fit[0] == pytest.approx(1.2e-3, rel=0.1)
    exact = fit_glass_transition(t, v)
    assert exact.tg == pytest.approx(tg_true, abs=1e-6)
    assert fit.resolved(300, 1500)
    # a straight line with noise has no kink: the crossing of two nearly parallel fits is not a Tg
    line = 16.0 + 1e-3 * t + rng.normal(scale=2e-3, size=t.size)
    assert not fit_glass_transition(t, line, liquid_range=(1000, 1500), glass_range=(300, 600)).resolved(300, 1500)
    with pytest.raises(ValueError, match="fewer than 3 points"):
        fit_glass_transition(t, v, liquid_range=(1490, 1500))


def test_protocol_temperature():
    t = np.array([0.0, 5.0, 10.0, 12.0, 20.0, 100.0])
    np.testing.assert_allclose(protocol_temperature(t, 1500.0, 300.0, 100.0, 10.0),
                               [1500, 1500, 1500, 1300, 500, 300])


def emt_alloy(seed=0):
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True) * (2, 2, 2)
    atoms.numbers[rng.permutation(len(atoms))[:10]] = 79  # Cu22Au10
    return atoms


@pytest.mark.slow
def test_quench_follows_the_ramp_and_resumes(tmp_path):
    kw = dict(t_melt=1500.0, t_final=300.0, cooling_rate=1000.0, timestep=4.0, melt_time=0.4, hold_time=0.2,
              window=100.0, sample_interval=5, trajectory_interval=50, checkpoint_interval=50, seed=1,
              show_progress=False, t_tau=40.0, p_tau=400.0, relax_steps=0)
    res = quench(emt_alloy(), EMT(), directory=tmp_path / "a", **kw)
    d = res.data
    n_steps = int(round((0.4 + 1.2 + 0.2) * 1000 / 4))
    assert d["step"][-1] == n_steps and len(d["step"]) == n_steps // 5
    np.testing.assert_allclose(d["target_K"], protocol_temperature(d["time_ps"], 1500, 300, 1000, 0.4), atol=1e-3)
    assert set(d["stage"]) == {"melt", "cool", "hold"}
    # the measured temperature follows the ramp (32 atoms: large fluctuations; compare window means)
    w = res.windows()
    assert len(w["T"]) >= 10
    cool = d["stage"] == "cool"
    assert np.corrcoef(d["target_K"][cool], d["temperature_K"][cool])[0, 1] > 0.8
    assert abs(np.mean(d["temperature_K"][cool] - d["target_K"][cool])) < 120
    assert np.all(np.isfinite(d["volume_per_atom"])) and np.all(d["volume_per_atom"] > 10)
    np.testing.assert_allclose(d["enthalpy_per_atom"], d["epot_per_atom"] + d["ekin_per_atom"], atol=1e-12)
    fig = res.plot(tmp_path / "vt.png")
    assert [ax.get_xlabel() for ax in fig.axes] == ["T (K)", "T (K)"] and len(fig.axes[0].lines) >= 1
    assert (tmp_path / "vt.png").stat().st_size > 1000

    # kill after 200 steps, then resume: the recorded rows are kept and the run completes
    b = tmp_path / "b"
    with pytest.raises(KeyboardInterrupt):
        _quench_killed_at(b, 230, kw)
    partial = QuenchResult.load(b)
    assert partial.data["step"][-1] == 230
    done = quench(emt_alloy(), _Killer(), directory=b, **kw)  # the same calculator: a run resumes only with it
    steps = done.data["step"]
    assert steps[-1] == n_steps and np.all(np.diff(steps) == 5)
    np.testing.assert_array_equal(done.data["temperature_K"][: 200 // 5], partial.data["temperature_K"][: 200 // 5])
    from ase.io import read

    assert [a.info["step"] for a in read(b / "quench.traj", ":")] == list(range(50, n_steps + 1, 50))
    # the glass frames are those of the hold: after 0.4 ps melt + 1.2 ps ramp = step 400
    assert [a.info["step"] for a in done.glass_frames()] == [450]


class _Killer(EMT):
    """EMT that raises KeyboardInterrupt on the call after ``limit`` (None: never), as a kill would."""

    limit = None
    calls = 0

    def calculate(self, *args, **kwargs):
        _Killer.calls += 1
        if _Killer.limit is not None and _Killer.calls > _Killer.limit:
            raise KeyboardInterrupt
        super().calculate(*args, **kwargs)


def _quench_killed_at(directory, step, kw):
    _Killer.calls, _Killer.limit = 0, step + 1
    try:
        quench(emt_alloy(), _Killer(), directory=directory, **kw)
    finally:
        _Killer.limit = None


def test_quench_relaxes_a_random_start(tmp_path):
    """Overlapping atoms are relaxed at fixed cell first, so the first recorded pressure is moderate."""
    from equicalc.systems import random_alloy

    start = random_alloy(32, "Cu64Au36", volume_per_atom=12.0, seed=2)  # an alloy that EMT knows, squeezed
    kw = dict(t_melt=1000.0, t_final=900.0, cooling_rate=10000.0, timestep=2.0, melt_time=0.02, hold_time=0.0,
              sample_interval=1, trajectory_interval=0, show_progress=False)
    raw = quench(start, EMT(), directory=tmp_path / "raw", relax_steps=0, **kw)
    relaxed = quench(start, EMT(), directory=tmp_path / "relaxed", relax_steps=50, **kw)
    assert relaxed.data["epot_per_atom"][0] < raw.data["epot_per_atom"][0] - 0.05
    assert abs(relaxed.data["pressure_GPa"][0]) < abs(raw.data["pressure_GPa"][0])


def test_quench_stops_when_the_system_evaporates(tmp_path):
    """A calculator with a large spurious positive pressure blows the cell up: quench says so and stops."""

    class Expanding(EMT):  # E - a V: every state gains a pressure of a (1 eV/Å^3 = 160 GPa)
        def calculate(self, *args, **kwargs):
            super().calculate(*args, **kwargs)
            volume = self.atoms.get_volume()
            self.results["energy"] -= 0.05 * volume
            self.results["free_energy"] -= 0.05 * volume
            if "stress" in self.results:
                self.results["stress"][:3] -= 0.05

    kw = dict(t_melt=1000.0, t_final=900.0, cooling_rate=1000.0, timestep=4.0, melt_time=2.0, hold_time=0.0,
              sample_interval=5, trajectory_interval=0, show_progress=False, p_tau=200.0)
    with pytest.raises(RuntimeError, match="volume reached"):
        quench(emt_alloy(), Expanding(), directory=tmp_path, **kw)
    assert (tmp_path / "quench.csv").read_text().count("\n") > 2


def test_quench_input_errors(tmp_path):
    with pytest.raises(ValueError, match="periodic"):
        quench(Atoms("Cu2", positions=[[0, 0, 0], [2, 0, 0]]), EMT(), directory=tmp_path)
    with pytest.raises(ValueError, match="above t_melt"):
        quench(emt_alloy(), EMT(), t_melt=300, t_final=500, directory=tmp_path)
    with pytest.raises(ValueError, match="relax_steps"):
        quench(emt_alloy(), EMT(), relax_steps=-1, directory=tmp_path)
    with pytest.raises(ValueError, match="max_expansion"):
        quench(emt_alloy(), EMT(), max_expansion=1.0, directory=tmp_path)


def test_phonons_of_fcc_cu_with_emt_match_finite_differences(tmp_path):
    from equicalc.analysis.phonons import band_structure, density_of_states, phonons, plot_phonons, thermal_properties

    cubic = bulk("Cu", "fcc", a=3.59, cubic=True)  # close to EMT's lattice constant
    ph = phonons(cubic, EMT(), supercell=(2, 2, 2), displacement=0.01, primitive_matrix=None)
    # central finite differences of the forces for atom 0 displaced along x
    sc = ph.supercell
    from ase import Atoms

    base = Atoms(sc.symbols, cell=sc.cell, scaled_positions=sc.scaled_positions, pbc=True)
    h = 1e-3
    f = []
    for sign in (1, -1):
        a = base.copy()
        a.positions[0, 0] += sign * h
        a.calc = EMT()
        f.append(a.get_forces())
    fd = -(f[0] - f[1]) / (2 * h)  # (N, 3): d F_j / d x_0x, with a minus sign = Phi_{0x, j}
    np.testing.assert_allclose(ph.force_constants[0, :, 0, :], fd, atol=2e-3 * np.abs(fd).max())
    # Gamma of the conventional cell: 3 acoustic zeros, 9 zone-folded optical modes
    ph.run_qpoints([[0, 0, 0]])
    freqs = np.sort(ph.qpoints.frequencies[0])
    assert np.all(np.abs(freqs[:3]) < 0.05)
    assert np.all(freqs[3:] > 1.0)
    # band structure, DOS, thermal properties and a plot of the primitive cell
    prim = phonons(bulk("Cu", "fcc", a=3.59), EMT(), supercell=(3, 3, 3))
    bands = band_structure(prim, npoints=11)
    assert bands["labels"][0] == "G" and len(bands["label_positions"]) == len(bands["labels"])
    assert np.all(np.abs(bands["frequencies"][0][0]) < 0.05)
    dos = density_of_states(prim, mesh=(8, 8, 8))
    area = np.trapezoid(dos["total_dos"], dos["frequency_points"])
    assert area == pytest.approx(3.0, rel=0.05)  # three modes per atom of the primitive cell
    thermo = thermal_properties(prim, t_min=1000, t_max=1000, t_step=1, mesh=(8, 8, 8))
    assert thermo["heat_capacity"][0] == pytest.approx(3 * 8.314462618, rel=0.01)  # Dulong-Petit
    plot_phonons({"EMT": prim}, tmp_path / "ph.png", npoints=11, mesh=(6, 6, 6))
    assert (tmp_path / "ph.png").stat().st_size > 1000


def test_batched_and_one_by_one_phonons_agree(model64):
    from equicalc import EquiCalc
    from equicalc.analysis.phonons import phonons

    b2 = bulk("CuZr", "cesiumchloride", a=3.25)
    calc = EquiCalc(model64)
    batched = phonons(b2, calc, supercell=(2, 2, 2))
    single = phonons(b2, calc, supercell=(2, 2, 2), batch=False)
    np.testing.assert_allclose(batched.force_constants, single.force_constants, atol=1e-9)
    assert len(batched.supercells_with_displacements) >= 2
