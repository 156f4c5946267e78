"""Files that survive a kill at any instant: atomic writes, and output paths checked before long work.

    atomic_write(path, lambda tmp: ...)    # write a temporary file, then rename it over ``path``
    check_output(path)                      # before an hour of work: can ``path`` be written at all?
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Union

__all__ = ["writable_target", "check_output", "atomic_write", "atomic_torch_save", "atomic_copy", "remove_temporary"]

PathLike = Union[str, os.PathLike]


def writable_target(path: Union[str, os.PathLike]) -> Path:
    """The file that a save to ``path`` replaces: a symbolic link's target, checked to be a regular file or new.

    ``ValueError`` for a directory or a device, socket or pipe (a save would replace it with a regular file).
    """
    path = Path(os.path.realpath(path))
    if path.exists() and not path.is_file():
        raise ValueError(f"cannot write to {path}: it is not a regular file")
    return path


def atomic_write(path: Union[str, os.PathLike], write) -> None:
    """``write(tmp)`` to a temporary file in the target's folder, then rename over ``path`` (links followed).

    A kill at any instant leaves ``path`` as it was or complete; the temporary file is removed on errors.
    """
    path = writable_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make the file private
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_torch_save(obj, path: Union[str, os.PathLike]) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    import torch

    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_copy(source: Union[str, os.PathLike], path: Union[str, os.PathLike]) -> None:
    """A copy of ``source`` at ``path``, written atomically."""
    import shutil

    atomic_write(path, lambda tmp: shutil.copyfile(source, tmp))


def check_output(path: PathLike, what: str = "output") -> Path:
    """``path`` if a file can be written there (its folder exists and is writable, it is no directory or device),
    else ``ValueError`` naming it: checked before a long computation, not after."""
    target = writable_target(path)
    folder = target.parent
    if not folder.is_dir():
        raise ValueError(f"{what} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise ValueError(f"{what} {path}: not writable")
    return target


def remove_temporary(folder: PathLike) -> list:
    """Delete the temporary files (``*.tmp``) that writes killed midway left in ``folder``; returns them."""
    stale = sorted(Path(folder).glob("*.tmp"))
    for p in stale:
        p.unlink()
    return stale
