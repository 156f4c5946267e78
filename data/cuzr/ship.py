"""Write the shipped Cu–Zr models into the package, with their measured test errors in the metadata.

    python data/cuzr/ship.py              # every model of SOURCES -> equicalc/models/<file>

For each shipped name (``equicalc.models.SHIPPED``) it reads the training run's
model, measures its errors on the condensed test frames (the test split's
liquids, quenches, glasses, crystals, strained cells and surfaces: without the
isolated atoms, dimers, clusters and expanded liquids of the ``sparse`` stage
and the compressed cells of the ``close`` stage) and on the whole test split, and saves the same weights with those
errors under ``metadata["test_errors"]`` (what ``equicalc models`` prints and
``tests/test_cuzr_model.py`` checks).
"""
from __future__ import annotations

import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parent
# shipped name -> the training run's model that it is
# (a run's model.pth is written when it ends; model_epoch<N>.pth is its best checkpoint after epoch N, exported
# with `equicalc deploy` while the run goes on)
SOURCES = {"cuzr": HERE / "full_cutoff_pinned" / "model.pth",
           "cuzr-allegro": HERE / "allegro_full_cutoff_zbl" / "model.pth"}
# config types of the condensed frames of generate.py (the others: isolated atoms, dimers, clusters,
# expanded liquids and compressed cells)
CONDENSED_TYPES = ("liquid", "liquid_composition", "quench", "glass", "crystal", "strained", "surface")


def test_errors(model, condensed_only: bool, plot=None) -> dict:
    """MAE and RMSE (meV/atom, meV/Å, meV/Å³) of ``model`` on the test split, and a ``frames`` label.

    ``plot``: also write a parity plot there.
    """
    from equicalc.data import read_frames
    from equicalc.evaluate import error_metrics, parity_plot, predict_frames

    frames = read_frames(HERE / "test.extxyz.gz")
    if condensed_only:
        frames = [f for f in frames if f.atoms.info.get("config_type") in CONDENSED_TYPES]
    arrays = predict_frames(model, frames, batch_size=16)
    metrics = error_metrics(arrays, per_species=True)
    if plot is not None:
        parity_plot(arrays, plot, title=f"Cu–Zr test split ({len(frames)} frames)")
    label = f"{len(frames)} {'condensed ' if condensed_only else ''}test frames"
    return {"frames": label, **{k: round(v, 3) for k, v in metrics.items()}}


def ship(name: str, source: Path) -> dict:
    """Save ``source``'s model as the shipped model ``name`` with its test errors; returns them."""
    from equicalc import load_model, save_model
    from equicalc.models import shipped_file

    model = load_model(source)
    meta = dict(model.metadata)
    meta["test_errors"] = test_errors(model, condensed_only=True)
    meta["test_errors_all_frames"] = test_errors(model, condensed_only=False)
    meta["source"] = str(source.relative_to(HERE.parent.parent))
    save_model(model, shipped_file(name), metadata=meta)
    return meta["test_errors"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=list(SOURCES), default=list(SOURCES))
    args = parser.parse_args(argv)
    for name in args.only:
        errors = ship(name, SOURCES[name])
        print(f"{name}: {SOURCES[name].relative_to(HERE)} -> package; errors on the {errors['frames']}, "
              "as the README tables state them:\n" + readme_table(errors))


def readme_table(errors: dict) -> str:
    """The README's test-error table (between its ``<!-- test-errors -->`` markers) of ``test_errors``'s dict."""
    rows = ["| condensed test frames | MAE | RMSE |", "| --- | ---: | ---: |"]
    for key, label in (("energy", "energy (meV/atom)"), ("forces", "forces (meV/Å)"), ("stress", "stress (meV/Å³)")):
        rows.append(f"| {label} | {errors[key + '_mae']:.2f} | {errors[key + '_rmse']:.2f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
