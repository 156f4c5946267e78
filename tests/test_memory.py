"""``keep_freed_memory``: a freed large block stays with the process (glibc), and calculators ask for it."""
import platform
import subprocess
import sys
import textwrap

import pytest

from equicalc import memory
from conftest import small_model

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                           reason="glibc's malloc options")


def _resident_after_free(keep: bool) -> float:
    """Resident MB gained by allocating, touching and freeing 400 MB in a fresh interpreter."""
    code = textwrap.dedent(f"""
        import os, numpy as np
        from equicalc import memory
        if {keep}:
            assert memory.keep_freed_memory()
        page = os.sysconf("SC_PAGE_SIZE")
        rss = lambda: int(open("/proc/self/statm").read().split()[1]) * page / 1e6
        before = rss()
        a = np.ones(50_000_000)
        del a
        print(rss() - before)
    """)
    return float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)


@glibc
def test_freed_block_is_kept_only_when_asked():
    assert _resident_after_free(keep=False) < 50  # returned to the OS
    assert _resident_after_free(keep=True) > 350  # kept for the next allocation


@pytest.mark.parametrize("keep", [True, False])
def test_calculator_on_cpu_asks_for_it(monkeypatch, keep):
    from equicalc import EquiCalc

    calls = []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: calls.append(1) or True)
    EquiCalc(small_model(), device="cpu", keep_freed_memory=keep)
    assert calls == ([1] if keep else [])


def test_idempotent():
    assert memory.keep_freed_memory() == memory.keep_freed_memory()
