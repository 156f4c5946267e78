"""A wheel, installed into a fresh virtual environment, carries the shipped models and runs the main job's pieces."""
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_has_the_shipped_models(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(wheels), str(ROOT)], check=True)
    wheel = next(wheels.glob("equicalc-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # the dependencies come from this environment (a path in a .pth file, so its own .pth files, such as an
    # editable install of equicalc, are not read); equicalc itself only from the wheel
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True)
    script = (
        "import equicalc, pathlib\n"
        "from equicalc import EquiCalc\n"
        "from equicalc.systems import random_alloy\n"
        "assert 'site-packages' in equicalc.__file__, equicalc.__file__\n"
        "atoms = random_alloy(32, 'Cu64Zr36', volume_per_atom=17.0)\n"
        "atoms.calc = EquiCalc('cuzr')\n"
        "print(atoms.get_potential_energy() / len(atoms))\n"
    )
    out = subprocess.run([str(python), "-c", script], check=True, capture_output=True, text=True, cwd=tmp_path)
    from equicalc import EquiCalc
    from equicalc.systems import random_alloy

    atoms = random_alloy(32, "Cu64Zr36", volume_per_atom=17.0)
    atoms.calc = EquiCalc("cuzr")
    assert float(out.stdout.split()[-1]) == pytest.approx(atoms.get_potential_energy() / len(atoms), abs=1e-9)
    help_text = subprocess.run([str(venv / "bin" / "equicalc"), "quench", "--help"], check=True,
                               capture_output=True, text=True, cwd=tmp_path).stdout
    assert "--rate" in help_text and "cuzr" in help_text
    listing = subprocess.run([str(venv / "bin" / "equicalc"), "models"], check=True, capture_output=True,
                             text=True, cwd=tmp_path).stdout
    assert "cuzr-allegro" in listing
