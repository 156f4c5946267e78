"""Every code block of the README runs (Python) or parses (the equicalc commands)."""
import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
TEXT = README.read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, re.S)


@pytest.mark.slow
@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[f"python-{k}" for k in range(len(PYTHON_BLOCKS))])
def test_python_blocks_run(block, tmp_path, monkeypatch):
    from conftest import random_cuzr, small_model

    from equicalc import save_model

    monkeypatch.chdir(tmp_path)
    namespace = {}
    if "model.pth" in block:  # the opening fragment: a model file and an Atoms object to use it on
        save_model(small_model(dtype="float32"), tmp_path / "model.pth")
        namespace["atoms"] = random_cuzr(seed=0)
    exec(compile(block, "README.md", "exec"), namespace)


def test_equicalc_commands_parse():
    from equicalc.cli import build_parser

    commands = []
    for block in re.findall(r"```bash\n(.*?)```", TEXT, re.S):
        for line in block.splitlines():
            for part in line.split("&&"):
                part = part.split("#")[0].strip()
                if part.startswith("equicalc "):
                    commands.append(shlex.split(part)[1:])
                elif " -m equicalc " in part:  # under torchrun
                    commands.append(shlex.split(part.split(" -m equicalc ")[1]))
    commands += [shlex.split(c.strip("`"))[1:] for c in re.findall(r"`equicalc [a-z]+[^`]*`", TEXT)]
    assert {c[0] for c in commands} >= {"quench", "md", "rdf", "phonons", "train", "eval", "deploy"}
    parser = build_parser()
    for args in commands:
        if "--help" in args or "…" in args:
            continue
        parser.parse_args(args)


def test_config_reference_in_readme_is_current():
    from equicalc.train import config_reference

    start = TEXT.index("<!-- config-reference")
    body = TEXT[TEXT.index("\n", start) + 1:TEXT.index("<!-- end config-reference -->")].strip()
    assert body == config_reference().strip(), "regenerate the README table with equicalc.train.config_reference()"


def test_readme_config_example_is_valid(tmp_path):
    import yaml

    from equicalc.train import config_from_dict

    blocks = re.findall(r"```yaml\n(.*?)```", TEXT, re.S)
    assert blocks
    for block in blocks:
        config_from_dict(yaml.safe_load(block), base_dir=tmp_path)
