"""Every tutorial notebook runs from top to bottom (in its quick setting)."""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))


def test_there_are_six_tutorials():
    assert len(NOTEBOOKS) == 6


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path):
    nb = nbformat.read(path, as_version=4)
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert "QUICK = True" in first_code.source, "the quick setting must be on in the committed notebook"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "outputs must not be committed"
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(TUTORIALS)}}).execute()
