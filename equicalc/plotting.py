"""Figures without pyplot: ``matplotlib.figure.Figure`` objects, so no global backend is ever changed.

A returned figure shows itself in a notebook and saves with ``fig.savefig(path)``;
scripts and the command line never need a display.
"""
from __future__ import annotations

__all__ = ["new_figure", "save_figure"]


def new_figure(ncols: int = 1, nrows: int = 1, size=(6.0, 4.0), **subplots):
    """A ``Figure`` (size in inches) and its axes (``Figure.subplots``; ``subplots`` adds its options)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    return fig, fig.subplots(nrows, ncols, **subplots)


def save_figure(fig, path, dpi: int = 120) -> None:
    """Lay out ``fig`` and write it to ``path`` (the format from the suffix, PNG usually)."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
