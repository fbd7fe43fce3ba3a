"""CPU kernels for data-loader workers: framing, crops, PCM-to-float and channel mixing.

They run once per item in every worker. The PCM kernels convert and mix channels in one
numba pass (NumPy makes full float temporaries: ~30x slower, see benchmarks/), compiled with
``cache=True`` (once per machine, not per worker); without numba the NumPy twins in
``musicrep.audio.reference`` serve. Framing and crops copy slices into one preallocated
output: they are memory bound and NumPy's slice copies beat a numba loop there. The public
functions validate their arguments so that no bad input reaches compiled code.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np

from musicrep.audio import reference
from musicrep.checks import positive_int

SAMPLES = " (samples)"  # the unit positive_int's message names

def numba_cache_dir() -> Path:
    """Where numba keeps the compiled kernels: ``$NUMBA_CACHE_DIR`` if the user set it, else
    ``$XDG_CACHE_HOME/musicrep/numba`` (``~/.cache/musicrep/numba``); never the installed package's
    folders, which may be shared or read-only."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "musicrep" / "numba"


os.environ.setdefault("NUMBA_CACHE_DIR", str(numba_cache_dir()))  # before numba reads its config
try:
    import numba
    import numba.core.config

    if not numba.core.config.CACHE_DIR:  # numba was imported earlier, before the variable was set
        numba.core.config.CACHE_DIR = str(numba_cache_dir())
except ImportError:  # numba is a dependency; this keeps a broken install usable, if slower
    numba = None

HAVE_NUMBA = numba is not None
_PCM_SCALE = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0}


def _jit(fn):
    return numba.njit(cache=True, nogil=True)(fn) if HAVE_NUMBA else None


@_jit
def _pcm_kernel(x, scale, out):  # pragma: no cover - compiled
    flat_in = x.reshape(-1)
    flat_out = out.reshape(-1)
    inv = 1.0 / scale
    for i in range(flat_in.shape[0]):
        flat_out[i] = flat_in[i] * inv


@_jit
def _mix_kernel(x, scale, out):  # pragma: no cover - compiled
    channels = x.shape[1]
    inv = 1.0 / (scale * channels)
    for t in range(x.shape[0]):
        acc = 0.0
        for c in range(channels):
            acc += x[t, c]
        out[t] = acc * inv


def _copy_windows(x: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Windows of ``x`` at ``starts`` into one preallocated array, zero past the end.

    Slice copies run at memcpy speed; a numba loop measured 2x slower here (seconds-long
    windows make the per-window Python overhead negligible), so this one stays in NumPy.
    """
    out = np.empty((starts.shape[0], length), dtype=np.float32)
    n = x.shape[0]
    for i, start in enumerate(starts.tolist()):
        m = min(start + length, n) - start
        out[i, :m] = x[start:start + m]
        out[i, m:] = 0.0
    return out


def _wave(x: np.ndarray, name: str = "x") -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"{name} must be a 1-D wave [T], got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    return np.ascontiguousarray(x, dtype=np.float32)


def n_frames(n_samples: int, window: int, hop: int) -> int:
    """How many windows ``frame`` returns for a wave of ``n_samples`` samples."""
    return reference.n_frames(positive_int("n_samples", n_samples, SAMPLES),
                              positive_int("window", window, SAMPLES), positive_int("hop", hop, SAMPLES))


def frame(x: np.ndarray, window: int, hop: int) -> np.ndarray:
    """Windows ``[n_frames, window]`` covering every sample of ``x``; the last is zero-padded.

    A wave shorter than one window gives one padded window, so every item yields at least one
    embedding.
    """
    x = _wave(x)
    window, hop = positive_int("window", window, SAMPLES), positive_int("hop", hop, SAMPLES)
    count = reference.n_frames(x.shape[0], window, hop)
    return _copy_windows(x, np.arange(count, dtype=np.int64) * hop, window)


def crop(x: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Crops ``[len(starts), length]`` of ``x`` at the given starts, zero-padded past the end."""
    x = _wave(x)
    length = positive_int("length", length, SAMPLES)
    starts = np.ascontiguousarray(starts, dtype=np.int64)
    if starts.ndim != 1:
        raise ValueError(f"starts must be 1-D, got shape {starts.shape}")
    if starts.size and (starts.min() < 0 or starts.max() >= x.shape[0]):
        raise ValueError(f"starts must lie in [0, {x.shape[0]}) (the wave's length), "
                         f"got {starts.min()}..{starts.max()}")
    return _copy_windows(x, starts, length)


def random_crop_starts(n_samples: int, length: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` uniform crop starts for crops of ``length`` inside ``n_samples`` (0 if shorter)."""
    n_samples = positive_int("n_samples", n_samples, SAMPLES)
    length = positive_int("length", length, SAMPLES)
    count = positive_int("count", count, SAMPLES)
    return rng.integers(0, max(n_samples - length, 0) + 1, size=count, dtype=np.int64)


def random_crop(x: np.ndarray, length: int, rng: np.random.Generator, *,
                short: Literal["pad", "tile"] = "pad") -> np.ndarray:
    """One crop ``[length]`` at a uniform position. A shorter wave is zero-padded at the end
    (``short="pad"``) or repeated until it fills a crop (``"tile"``, what pre-training uses, so
    that no view of a short clip is part silence), then cropped at a uniform position."""
    x = _wave(x)
    if short == "tile" and x.shape[0] < length:
        x = np.tile(x, -(-length // x.shape[0]))
    elif short not in ("pad", "tile"):
        raise ValueError(f"short must be 'pad' or 'tile', got {short!r}")
    return crop(x, random_crop_starts(x.shape[0], length, 1, rng), length)[0]


def fit_length(x: np.ndarray, length: int) -> np.ndarray:
    """``x`` cut or zero-padded at the end to exactly ``length`` samples."""
    x = _wave(x)
    length = positive_int("length", length, SAMPLES)
    if x.shape[0] >= length:
        return x[:length].copy()
    return np.concatenate([x, np.zeros(length - x.shape[0], dtype=np.float32)])


def _pcm(x: np.ndarray) -> tuple[np.ndarray, float]:
    x = np.asarray(x)
    if x.dtype not in _PCM_SCALE:
        raise ValueError(f"PCM samples must be int16 or int32, got {x.dtype}")
    if x.ndim not in (1, 2):
        raise ValueError(f"PCM samples must be [T] or [T, channels], got shape {x.shape}")
    return np.ascontiguousarray(x), _PCM_SCALE[x.dtype]


def pcm_to_float(x: np.ndarray) -> np.ndarray:
    """int16/int32 PCM to float32 in [-1, 1], same shape (full scale is 2**15 or 2**31)."""
    x, scale = _pcm(x)
    if not HAVE_NUMBA:
        return reference.pcm_to_float(x)
    out = np.empty(x.shape, dtype=np.float32)
    _pcm_kernel(x, scale, out)
    return out


def _channels(x: np.ndarray) -> np.ndarray:
    if x.ndim == 2 and x.shape[1] == 0:
        raise ValueError("x has no channels")
    if x.ndim != 2:
        raise ValueError(f"expected [T, channels], got shape {x.shape}")
    return x


def mix_to_mono(x: np.ndarray) -> np.ndarray:
    """The mean over channels of float samples ``[T, channels]`` (a 1-D wave passes through)."""
    x = np.asarray(x)
    if x.ndim == 1:
        return np.ascontiguousarray(x, dtype=np.float32)
    x = _channels(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"mix_to_mono takes float samples, got {x.dtype}; use pcm_to_mono")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not HAVE_NUMBA:
        return reference.mix_to_mono(x)
    out = np.empty(x.shape[0], dtype=np.float32)
    _mix_kernel(x, 1.0, out)
    return out


def pcm_to_mono(x: np.ndarray) -> np.ndarray:
    """int16/int32 PCM ``[T, channels]`` (or ``[T]``) to a float32 mono wave in one pass."""
    x, scale = _pcm(x)
    if x.ndim == 1:
        return pcm_to_float(x)
    x = _channels(x)
    if not HAVE_NUMBA:
        return reference.pcm_to_mono(x)
    out = np.empty(x.shape[0], dtype=np.float32)
    _mix_kernel(x, scale, out)
    return out
