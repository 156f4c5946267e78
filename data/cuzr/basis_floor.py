"""Can the models' radial basis follow the reference's radial functions?

A NequIP or Allegro model sees a pair distance only through ``num_basis`` Bessel
functions ``sin(n pi r / r_c) / (r / r_c)`` times the cutoff envelope, fed to a
network (NequIP's radial networks, Allegro's two-body network). The Mendelev
Cu–Zr EAM is built from pair and density functions with knots a few tenths of an
Å apart, out to 7.6 Å. This script fits all seven of them (three pair functions
phi, four density functions rho) with one such network (N Bessel functions
times the envelope, two hidden layers of 64 SiLU units, one output per function)
to their values and slopes at the pair distances of condensed test frames: a
few hundred Adam steps, then the output layer by least squares. It writes the
EAM with the fitted functions (the embedding functions and everything below
1.5 Å unchanged) and prints the force error against the true EAM on those
frames, and the B2 CuZr lattice constant and elastic constants of the fitted EAM
against the true one's: what the basis costs a model that learnt the reference's
functions. Those elastic constants depend on the fit as much as on the basis
(fits of equal force error differ by tens of GPa in C11; ``--steps 3000`` brings
10 functions within 12 % of the EAM's C11 and 5 % of C12 and C44), so compare
basis sizes at more than one ``--steps``.

    python data/cuzr/basis_floor.py [--num-basis 10 16 24 32] [--steps 300] [--every 10]

Needs ``pip install -e ".[reference]"`` (matscipy reads and writes the EAM file). About
half a minute per basis size on one core.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
R_MAX = 7.6  # Å: the EAM's cutoff, and the fitted networks'
R_MIN = 1.5  # Å: below this the tables are kept (the models' ZBL term covers it)
PAIRS = [(0, 0), (0, 1), (1, 1)]  # pair functions phi (symmetric)
DENSITIES = [(0, 0), (0, 1), (1, 0), (1, 1)]  # density functions rho of eam/fs


class RadialNetwork(torch.nn.Module):
    """``MLP(B(r) u(r)) u(r)``: N Bessel functions times the polynomial envelope, 2 x 64 SiLU, ``outputs`` values."""

    def __init__(self, num_basis: int, r_max: float, outputs: int):
        super().__init__()
        from equicalc.nn.radial import RadialEmbedding

        self.embedding = RadialEmbedding(r_max, num_basis)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(num_basis, 64), torch.nn.SiLU(), torch.nn.Linear(64, 64),
                                       torch.nn.SiLU(), torch.nn.Linear(64, outputs))

    def hidden(self, r: torch.Tensor):
        """The last hidden layer's activations (P, 64) and the envelope (P, 1) at distances ``r``."""
        from equicalc.nn.radial import polynomial_envelope

        envelope = polynomial_envelope(r / self.embedding.r_max, self.embedding.p).unsqueeze(-1)
        return self.mlp[:-1](self.embedding(r)), envelope

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        hidden, envelope = self.hidden(r)
        return self.mlp[-1](hidden) * envelope


def value_and_slope(net, r: torch.Tensor, h: float = 1e-4):
    """The network's values and their central-difference slopes (float64: error about 1e-8 relative)."""
    return net(r), (net(r + h) - net(r - h)) / (2 * h)


def fit(num_basis: int, r: np.ndarray, targets: np.ndarray, slopes: np.ndarray, steps: int, seed: int = 0):
    """A ``RadialNetwork`` fitted to ``targets`` and ``slopes`` (P, F) at distances ``r`` (P,), each function
    weighted by the spread of its slope; Adam with a cosine schedule."""
    torch.manual_seed(seed)
    net = RadialNetwork(num_basis, R_MAX, targets.shape[1]).double()
    r_all, y_all, dy_all = (torch.as_tensor(a) for a in (r, targets, slopes))
    scale = dy_all.std(dim=0)
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        pick = torch.randint(len(r_all), (4096,), generator=gen)
        y, dy = value_and_slope(net, r_all[pick])
        loss = (((y - y_all[pick]) / scale) ** 2).mean() + (((dy - dy_all[pick]) / scale) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    pick = torch.randperm(len(r_all), generator=gen)[:20000]
    output_layer_by_least_squares(net, r_all[pick], y_all[pick], dy_all[pick])
    return net


def output_layer_by_least_squares(net, r: torch.Tensor, targets: torch.Tensor, slopes: torch.Tensor,
                                  h: float = 1e-4) -> None:
    """Replace the output layer by the least-squares fit to ``targets`` and ``slopes`` at ``r`` (both are
    linear in its weights), which removes what Adam left of the last layer's error."""
    def design(x):  # the output layer's inputs (hidden activations and 1 for the bias) times the envelope
        hidden, envelope = net.hidden(x)
        return torch.cat([hidden, torch.ones_like(x).unsqueeze(-1)], dim=1) * envelope

    with torch.no_grad():
        a = torch.cat([design(r), (design(r + h) - design(r - h)) / (2 * h)])
        b = torch.cat([targets, slopes])
        w = torch.linalg.lstsq(a, b).solution
        net.mlp[-1].weight.copy_(w[:-1].t())
        net.mlp[-1].bias.copy_(w[-1])


def fitted_potential(tables, net, target: Path) -> None:
    """Write the EAM of ``tables`` with its pair and density functions replaced by ``net``'s above ``R_MIN``."""
    from matscipy.calculators.eam.io import write_eam

    source, par, embedding, density, pair = tables
    grid = np.arange(pair.shape[-1]) * par.distance_grid_spacing
    above = grid >= R_MIN
    with torch.no_grad():
        values = net(torch.as_tensor(grid[above])).numpy()
    pair, density = pair.copy(), density.copy()
    for k, (a, b) in enumerate(PAIRS):
        pair[a, b, above] = pair[b, a, above] = grid[above] * values[:, k]  # the file holds r phi(r)
    for k, (a, b) in enumerate(DENSITIES):
        density[a, b, above] = values[:, len(PAIRS) + k]
    write_eam(source, par, embedding, density, pair, str(target), kind="eam/fs")


def b2_properties(calc) -> dict:
    """B2 CuZr under ``calc``: lattice constant ``a`` (Å) and C11, C12, C44, B (GPa)."""
    from equicalc.analysis.elastic import cubic_elastic_constants
    from equicalc.systems import relaxed_b2

    atoms = relaxed_b2(calc)
    return {"a": float(atoms.cell[0, 0]), **cubic_elastic_constants(atoms, calc)}


def _b2_line(b2: dict) -> str:
    return f"B2 a0 {b2['a']:.4f} Å, C11 / C12 / C44 / B " + " / ".join(f"{b2[k]:.1f}" for k in
                                                                        ("C11", "C12", "C44", "B")) + " GPa"


def basis_errors(num_basis_list, steps: int = 300, every: int = 10) -> dict:
    """{num_basis: (force MAE, RMSE, B2 properties)} of the fitted EAM; forces against the EAM's, meV/Å, on
    condensed test frames; B2 from ``b2_properties`` (``"EAM"``: the true EAM's)."""
    from ase.calculators.eam import EAM as TableSplines
    from ase.neighborlist import neighbor_list
    from matscipy.calculators.eam import EAM
    from matscipy.calculators.eam.io import read_eam

    from equicalc.data import read_frames
    from equicalc.reference import eam_potential_file
    from cutoff_floor import force_errors, frame_forces
    from ship import CONDENSED_TYPES

    source = eam_potential_file()
    frames = [f.atoms for f in read_frames(HERE / "test.extxyz.gz")
              if f.atoms.info.get("config_type") in CONDENSED_TYPES][::every]
    splines = TableSplines(potential=str(source))  # the functions as cubic splines, with their slopes
    r = np.concatenate([neighbor_list("d", atoms, R_MAX) for atoms in frames])
    functions = [splines.phi[a, b] for a, b in PAIRS] + [splines.electron_density[a, b] for a, b in DENSITIES]
    targets = np.stack([f(r) for f in functions], axis=1)
    slopes = np.stack([f.derivative()(r) for f in functions], axis=1)
    tables = read_eam(str(source), kind="eam/fs")

    eam = EAM(str(source), kind="eam/fs")
    reference = frame_forces(eam, frames)
    results = {"EAM": (0.0, 0.0, b2_properties(eam))}
    print(f"the EAM: {_b2_line(results['EAM'][2])}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for num_basis in num_basis_list:
            path = Path(tmp) / f"basis{num_basis}.eam.fs"
            fitted_potential(tables, fit(num_basis, r, targets, slopes, steps), path)
            mae, rmse = force_errors(path, frames, reference)
            results[num_basis] = (mae, rmse, b2_properties(EAM(str(path), kind="eam/fs")))
            print(f"{num_basis} Bessel functions: force MAE {mae:.1f}, RMSE {rmse:.1f} meV/Å ({len(frames)} "
                  f"condensed test frames); {_b2_line(results[num_basis][2])}", flush=True)
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-basis", type=int, nargs="+", default=[10, 16, 24, 32])
    parser.add_argument("--steps", type=int, default=300, help="Adam steps per fit (default 300)")
    parser.add_argument("--every", type=int, default=10, help="use every n-th condensed test frame (default 10)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    basis_errors(args.num_basis, args.steps, args.every)


if __name__ == "__main__":
    main()
