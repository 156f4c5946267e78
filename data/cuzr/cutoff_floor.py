"""How much of the reference forces lies beyond a model's cutoff.

The Mendelev Cu–Zr EAM interacts out to 7.6 Å. A strictly local model with a
cutoff R (Allegro; approximately also a message-passing model with per-layer
cutoff R) never sees the pairs between R and 7.6 Å, so the forces those pairs
carry set a floor under its force error. This script measures that part: it
writes the same potential with its pair and density functions switched off
linearly over the 0.2 Å below R, evaluates the test split with both, and prints
the MAE and RMSE of the difference (meV/Å per force component).

    python data/cuzr/cutoff_floor.py [--cutoffs 5 5.5 6 6.5 7] [--every 1]

Needs ``pip install -e ".[reference]"`` (matscipy reads and writes the EAM file).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def truncated_potential(source: Path, cutoff: float, target: Path, width: float = 0.2) -> None:
    """Write ``source`` (eam/fs) to ``target`` with its pair and density functions switched off at ``cutoff`` (Å)."""
    from matscipy.calculators.eam.io import read_eam, write_eam

    src, par, embedding, density, pair = read_eam(str(source), kind="eam/fs")
    r = np.arange(pair.shape[-1]) * par.distance_grid_spacing
    switch = np.clip((cutoff - r) / width, 0.0, 1.0)
    write_eam(src, par, embedding, density * switch, pair * switch, str(target), kind="eam/fs")


def frame_forces(calc, atoms_list) -> np.ndarray:
    """Forces (eV/Å) of every structure of ``atoms_list`` with ``calc``, stacked: (total atoms, 3)."""
    out = []
    for atoms in atoms_list:
        atoms = atoms.copy()
        atoms.calc = calc
        out.append(atoms.get_forces())
    return np.concatenate(out)


def force_errors(potential: Path, atoms_list, reference: np.ndarray) -> tuple:
    """MAE and RMSE (meV/Å) of the forces of the eam/fs file ``potential`` against ``reference`` (eV/Å)."""
    from matscipy.calculators.eam import EAM

    diff = (frame_forces(EAM(str(potential), kind="eam/fs"), atoms_list) - reference) * 1e3
    return float(np.abs(diff).mean()), float(np.sqrt((diff ** 2).mean()))


def far_field_errors(cutoffs, every: int = 1) -> dict:
    """{cutoff (Å): (MAE, RMSE)} of the force part carried by pairs beyond the cutoff, meV/Å, on the test split."""
    from matscipy.calculators.eam import EAM

    from equicalc.data import read_frames
    from equicalc.reference import eam_potential_file

    source = eam_potential_file()
    frames = read_frames(HERE / "test.extxyz.gz")[::every]
    full = EAM(str(source), kind="eam/fs")

    atoms_list = [frame.atoms for frame in frames]
    reference = frame_forces(full, atoms_list)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cutoff in cutoffs:
            path = Path(tmp) / f"cut{cutoff:g}.eam.fs"
            truncated_potential(source, cutoff, path)
            results[cutoff] = force_errors(path, atoms_list, reference)
            print(f"beyond {cutoff:g} Å: MAE {results[cutoff][0]:.1f}, RMSE {results[cutoff][1]:.1f} meV/Å "
                  f"({len(frames)} test frames)", flush=True)
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cutoffs", type=float, nargs="+", default=[5.0, 5.5, 6.0, 6.5, 7.0])
    parser.add_argument("--every", type=int, default=1, help="use every n-th test frame (default: all)")
    args = parser.parse_args(argv)
    far_field_errors(args.cutoffs, args.every)


if __name__ == "__main__":
    main()
