"""Mel filter banks computed by the compiled module (the smallest op; the mel front end uses it)."""
from __future__ import annotations

import torch

from musicrep._native import native_ops
from musicrep.ops import validate


def mel_filterbank(sample_rate: float, n_fft: int, n_mels: int, f_min: float = 0.0,
                   f_max: float | None = None, mel_scale: str = "slaney",
                   norm: str | float | None = "slaney", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Triangular mel filters ``[n_mels, n_fft // 2 + 1]``, equal to ``librosa.filters.mel``.

    ``norm``: ``None``, ``"slaney"`` (area normalisation) or a number p (each filter scaled to
    unit L_p norm, as librosa's ``norm=p``). Computed in float64, returned in ``dtype``.
    """
    n_fft = validate.n_fft(n_fft)
    n_mels = validate.positive_int("n_mels", n_mels)
    validate.choice("mel_scale", mel_scale, ("slaney", "htk"))
    f_min, f_max = validate.frequency_range(sample_rate, f_min, f_max)
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    weights = native_ops().mel_filterbank(n_mels, n_fft, float(sample_rate), f_min, f_max,
                                          mel_scale == "htk", validate.filter_norm(norm))
    return weights.to(dtype)
