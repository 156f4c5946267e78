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


def test_config_reference_in_readme_is_current():
    from equicalc.train import config_reference

    text = README.read_text()
    start = text.index("<!-- config-reference")
    body = text[text.index("\n", start) + 1:text.index("<!-- end config-reference -->")].strip()
    assert body == config_reference().strip(), "regenerate the README table with equicalc.train.config_reference()"


def test_readme_config_example_is_valid(tmp_path):
    import yaml

    from equicalc.train import config_from_dict

    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S)
    assert blocks
    for block in blocks:
        config_from_dict(yaml.safe_load(block), base_dir=tmp_path)
