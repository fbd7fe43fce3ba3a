"""numba keeps its compiled kernels in the user's cache folder, never in the installed package
(issue 25, item 8): a shared or read-only install must not be written to by whoever imports it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import musicrep.audio.kernels as kernels

CHILD = """
import numpy as np
from musicrep.audio import kernels
assert kernels.HAVE_NUMBA
rng = np.random.default_rng()
kernels.pcm_to_mono(rng.integers(-2**15, 2**15, size=(64, 2), dtype=np.int16))
kernels.mix_to_mono(rng.standard_normal((64, 3)).astype(np.float32))
"""


def package_cache_files() -> set[Path]:
    return {p for p in Path(kernels.__file__).parent.rglob("*") if p.suffix in (".nbi", ".nbc")}


@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("numba_first", [False, True])
def test_numba_caches_under_the_users_cache_folder(tmp_path: Path, numba_first: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    before = {p: p.stat().st_mtime_ns for p in package_cache_files()}
    code = ("import numba\n" if numba_first else "") + CHILD  # numba imported before musicrep, or not
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    cached = list((tmp_path / "cache" / "musicrep" / "numba").rglob("*.nbi"))
    assert cached, "no numba index under $XDG_CACHE_HOME/musicrep/numba"
    assert {p: p.stat().st_mtime_ns for p in package_cache_files()} == before  # nothing new in the package


@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")
def test_a_numba_cache_dir_the_user_set_is_kept(tmp_path: Path) -> None:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "mine"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    subprocess.run([sys.executable, "-c", CHILD], env=env, check=True, timeout=300)
    assert list((tmp_path / "mine").rglob("*.nbi")) and not (tmp_path / "xdg").exists()
