"""Predictions over a data set, error metrics, parity plots and predictions as extxyz.

    arrays = predict(model, GraphDataset(read_frames("test.extxyz"), model.r_max)).arrays()
    print(format_metrics(error_metrics(arrays, per_species=True)))
    parity_plot(arrays, "parity.png")

Units of the metrics: energy per atom in meV/atom, forces in meV/Å, stress in
meV/Å³ (MAE and RMSE over all components). Inference code: nothing here imports
the trainer.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import torch

from .data import Batch, GraphDataset, check_species, collate
from .nn.forces import compute_properties
from .plotting import new_figure, save_figure

__all__ = ["Accumulator", "predict", "error_metrics", "error_metrics_by_group", "format_metrics",
           "format_metrics_by_group", "parity_plot", "predict_frames", "stress_from_virial", "write_predictions"]


class Accumulator:
    """Collects reference and predicted labels batch by batch (float64 numpy, ASE units)."""

    def __init__(self):
        self.parts: Dict[str, List[np.ndarray]] = {k: [] for k in (
            "energy_ref", "energy_pred", "n_atoms", "forces_ref", "forces_pred", "numbers",
            "stress_ref", "stress_pred", "index", "stress_index")}

    def add(self, batch: Batch, out: Dict[str, torch.Tensor]) -> None:
        """Add one batch with the model's outputs (``energy``, ``forces``, optionally ``stress``)."""
        g = batch.graph
        np_ = lambda t: t.detach().double().cpu().numpy()  # noqa: E731
        self.parts["energy_ref"].append(np_(batch.energy))
        self.parts["energy_pred"].append(np_(out["energy"]))
        self.parts["n_atoms"].append(np_(g.n_atoms))
        self.parts["forces_ref"].append(np_(batch.forces))
        self.parts["forces_pred"].append(np_(out["forces"]))
        self.parts["numbers"].append(g.numbers.cpu().numpy())
        self.parts["index"].append(batch.index.cpu().numpy())
        if "stress" in out and bool(batch.has_stress.any()):
            mask = batch.has_stress.cpu()
            self.parts["stress_ref"].append(np_(batch.stress[mask]).reshape(-1, 9))
            self.parts["stress_pred"].append(np_(out["stress"][mask]).reshape(-1, 9))
            self.parts["stress_index"].append(batch.index.cpu().numpy()[mask.numpy()])

    def arrays(self) -> Dict[str, np.ndarray]:
        """Everything collected, concatenated."""
        out = {}
        for k, v in self.parts.items():
            if v:
                out[k] = np.concatenate(v)
            else:
                out[k] = np.zeros((0, 9)) if k.startswith("stress") else np.zeros(0)
        return out


def _mae_rmse(err: np.ndarray):
    if err.size == 0:
        return float("nan"), float("nan")
    return float(np.mean(np.abs(err))), float(np.sqrt(np.mean(err ** 2)))


def error_metrics(arrays: Dict[str, np.ndarray], per_species: bool = False) -> Dict[str, float]:
    """MAE and RMSE of energy per atom (meV/atom), forces (meV/Å) and stress (meV/Å³).

    With ``per_species``, force errors of each element too (keys ``forces_mae_Cu``...).
    """
    from ase.data import chemical_symbols

    e_err = (arrays["energy_pred"] - arrays["energy_ref"]) / arrays["n_atoms"] * 1e3
    f_err = (arrays["forces_pred"] - arrays["forces_ref"]) * 1e3
    s_err = (arrays["stress_pred"] - arrays["stress_ref"]) * 1e3
    m = {}
    m["energy_mae"], m["energy_rmse"] = _mae_rmse(e_err)
    m["forces_mae"], m["forces_rmse"] = _mae_rmse(f_err)
    m["stress_mae"], m["stress_rmse"] = _mae_rmse(s_err)
    if per_species:
        for z in np.unique(arrays["numbers"]):
            sel = arrays["numbers"] == z
            s = chemical_symbols[int(z)]
            m[f"forces_mae_{s}"], m[f"forces_rmse_{s}"] = _mae_rmse(f_err[sel])
    return m


def select_frames(arrays: Dict[str, np.ndarray], frames) -> Dict[str, np.ndarray]:
    """The part of ``Accumulator.arrays()`` that belongs to the structures at dataset positions ``frames``."""
    keep = np.isin(arrays["index"], np.asarray(frames))
    per_atom = np.repeat(keep, arrays["n_atoms"].astype(int))
    keep_stress = np.isin(arrays["stress_index"], np.asarray(frames))
    out = {}
    for key, value in arrays.items():
        if key.startswith("stress"):
            out[key] = value[keep_stress]
        elif key in ("forces_ref", "forces_pred", "numbers"):
            out[key] = value[per_atom]
        else:
            out[key] = value[keep]
    return out


def error_metrics_by_group(arrays: Dict[str, np.ndarray], groups) -> Dict[str, Dict[str, float]]:
    """``error_metrics`` for each group of structures; ``groups[k]`` labels the structure at dataset
    position k (for example its ``config_type``). Adds ``frames``, the group's size."""
    groups = np.asarray([str(g) for g in groups])
    out = {}
    for label in sorted(set(groups.tolist())):
        m = error_metrics(select_frames(arrays, np.flatnonzero(groups == label)))
        m["frames"] = int(np.count_nonzero(groups == label))
        out[label] = m
    return out


def format_metrics_by_group(by_group: Dict[str, Dict[str, float]], title: str = "") -> str:
    """A plain-text table of ``error_metrics_by_group`` output (MAE / RMSE of each quantity)."""
    lines = [title] if title else []
    width = max([len("group")] + [len(k) for k in by_group]) + 2
    lines.append(f"{'group':<{width}}{'frames':>7}{'energy (meV/atom)':>22}{'forces (meV/Å)':>22}"
                 f"{'stress (meV/Å³)':>22}")
    for label, m in by_group.items():
        cells = "".join(f"{m[q + '_mae']:>11.2f} /{m[q + '_rmse']:>8.2f}" for q in ("energy", "forces", "stress"))
        lines.append(f"{label:<{width}}{m['frames']:>7d}{cells}")
    return "\n".join(lines)


def format_metrics(m: Dict[str, float], title: str = "") -> str:
    """A plain-text table of ``error_metrics`` output."""
    lines = [title] if title else []
    lines.append(f"{'quantity':<22}{'MAE':>12}{'RMSE':>12}")
    rows = [("energy (meV/atom)", "energy"), ("forces (meV/Å)", "forces"), ("stress (meV/Å³)", "stress")]
    species = sorted({k.split("_", 2)[2] for k in m if k.startswith("forces_mae_")})
    rows += [(f"  forces {s} (meV/Å)", f"forces_{{}}_{s}") for s in species]
    for label, key in rows:
        mae_key = key.format("mae") if "{}" in key else f"{key}_mae"
        rmse_key = key.format("rmse") if "{}" in key else f"{key}_rmse"
        lines.append(f"{label:<22}{m[mae_key]:>12.3f}{m[rmse_key]:>12.3f}")
    return "\n".join(lines)


def predict(model, dataset: GraphDataset, batch_size: int = 16, device="cpu", stress: bool = True,
            show_progress: bool = False, desc: str = "evaluate") -> Accumulator:
    """Evaluate ``model`` on every structure of ``dataset`` (batched); returns the collected labels."""
    from tqdm.auto import tqdm

    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    acc = Accumulator()
    was_training = model.training
    model.eval()
    for batch in tqdm(loader, desc=desc, disable=not show_progress, leave=False):
        batch = batch.to(device)
        want_stress = stress and bool(batch.has_stress.any())
        out = compute_properties(model, batch.graph, forces=True, stress=want_stress)
        if want_stress:
            out["stress"] = stress_from_virial(out["virial"], batch)
        acc.add(batch, out)
    model.train(was_training)
    return acc


def predict_frames(model, frames, batch_size: int = 16, device="cpu", show_progress: bool = False) -> dict:
    """``predict`` on labelled ``Frame`` objects (``read_frames``): the collected arrays, in the frames' order.

    Frames with species the model does not know are an error naming the frame.
    """
    check_species(frames, model.species)
    data = GraphDataset(frames, model.r_max)
    return predict(model, data, batch_size=batch_size, device=device, show_progress=show_progress).arrays()


def stress_from_virial(virial: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Stress (B, 3, 3) eV/Å³ = -virial / V, with V replaced by 1 where no stress is defined."""
    volume = torch.linalg.det(batch.graph.cell).abs()
    volume = torch.where(batch.has_stress, volume, torch.ones_like(volume))
    return -virial / volume.view(-1, 1, 1).to(virial.dtype)


def parity_plot(arrays: Dict[str, np.ndarray], path=None, title: Optional[str] = None):
    """Predicted vs reference energy per atom, forces and (if any) stress; returns the ``Figure``.

    Saved as PNG when ``path`` is given.
    """
    m = error_metrics(arrays)
    panels = [
        ("energy per atom (eV/atom)", arrays["energy_ref"] / arrays["n_atoms"], arrays["energy_pred"] / arrays["n_atoms"],
         f"MAE {m['energy_mae']:.2f} meV/atom"),
        ("force components (eV/Å)", arrays["forces_ref"].ravel(), arrays["forces_pred"].ravel(),
         f"MAE {m['forces_mae']:.1f} meV/Å"),
    ]
    if arrays["stress_ref"].size:
        panels.append(("stress components (eV/Å³)", arrays["stress_ref"].ravel(), arrays["stress_pred"].ravel(),
                       f"MAE {m['stress_mae']:.2f} meV/Å³"))
    fig, axes = new_figure(len(panels), size=(4.2 * len(panels), 4.0), squeeze=False)
    for ax, (label, ref, pred, note) in zip(axes[0], panels):
        lo, hi = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
        pad = 0.03 * (hi - lo + 1e-12)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.6", lw=1)
        ax.scatter(ref, pred, s=4, alpha=0.5, lw=0)
        ax.set_xlabel(f"reference {label}")
        ax.set_ylabel(f"predicted {label}")
        ax.set_title(note, fontsize=10)
        ax.set_aspect("equal", adjustable="datalim")
    if title:
        fig.suptitle(title)
    if path is not None:
        save_figure(fig, path)
    return fig


def write_predictions(frames, arrays: Dict[str, np.ndarray], path) -> None:
    """Frames as extxyz with reference labels and the model's ``pred_energy``/``pred_forces``/``pred_stress``.

    ``frames`` are the ``Frame`` objects that ``arrays`` (``predict(...).arrays()``) was computed on, in order.
    """
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write
    from ase.stress import full_3x3_to_voigt_6_stress

    if not np.array_equal(arrays["index"], np.arange(len(frames))):
        raise ValueError("write_predictions: the predictions are not those of the frames, in their order")
    starts = np.concatenate([[0], np.cumsum(arrays["n_atoms"])]).astype(int)
    stress_row = {int(k): row for row, k in enumerate(arrays["stress_index"])}
    out = []
    for k, f in enumerate(frames):
        atoms = f.atoms.copy()
        labels = {"energy": f.energy, "forces": f.forces}
        atoms.info["pred_energy"] = float(arrays["energy_pred"][k])
        atoms.arrays["pred_forces"] = arrays["forces_pred"][starts[k]:starts[k + 1]]
        if f.stress is not None:
            labels["stress"] = full_3x3_to_voigt_6_stress(f.stress)
            if k in stress_row:
                atoms.info["pred_stress"] = full_3x3_to_voigt_6_stress(
                    arrays["stress_pred"][stress_row[k]].reshape(3, 3))
        atoms.calc = SinglePointCalculator(atoms, **labels)
        out.append(atoms)
    write(path, out, format="extxyz")
