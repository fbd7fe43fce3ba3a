"""Plain NumPy twins of the numba kernels in ``musicrep.audio.kernels``.

They are the test oracle for the kernels, and the implementation used when numba is not
installed: slower (they allocate per call), never different.
"""
from __future__ import annotations

import numpy as np


def n_frames(n_samples: int, window: int, hop: int) -> int:
    """Windows needed to cover every sample: the last one may run past the end (zero-padded)."""
    if n_samples <= window:
        return 1
    return 1 + -(-(n_samples - window) // hop)


def frame(x: np.ndarray, window: int, hop: int) -> np.ndarray:
    count = n_frames(x.shape[0], window, hop)
    padded = np.zeros((count - 1) * hop + window, dtype=np.float32)
    padded[: x.shape[0]] = x[: padded.shape[0]]
    view = np.lib.stride_tricks.sliding_window_view(padded, window)[::hop]
    return np.ascontiguousarray(view[:count])


def crop(x: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    padded = np.concatenate([x.astype(np.float32), np.zeros(length, dtype=np.float32)])
    index = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(length)[None, :]
    return padded[index]


def pcm_to_float(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.float64) / -float(np.iinfo(x.dtype).min)).astype(np.float32)


def mix_to_mono(x: np.ndarray) -> np.ndarray:
    if x.ndim == 1:
        return x.astype(np.float32)
    return x.astype(np.float64).mean(axis=1).astype(np.float32)


def pcm_to_mono(x: np.ndarray) -> np.ndarray:
    scale = -float(np.iinfo(x.dtype).min)
    if x.ndim == 1:
        return (x.astype(np.float64) / scale).astype(np.float32)
    return (x.astype(np.float64).mean(axis=1) / scale).astype(np.float32)
