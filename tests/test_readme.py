"""The README's quick start runs as written."""
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_quick_start_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    quick = [b for b in blocks if "build_model" in b]
    assert quick, "the README has no quick start"
    monkeypatch.chdir(tmp_path)
    for block in quick:
        exec(compile(block, "README.md", "exec"), {})
    assert (tmp_path / "model.pth").is_file()
