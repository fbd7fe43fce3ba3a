"""Mel filters in plain PyTorch, following librosa.filters.mel step by step (float64)."""
from __future__ import annotations

import math

import torch

from musicrep.ops import validate


def hz_to_mel(hz: torch.Tensor, htk: bool) -> torch.Tensor:
    if htk:
        return 2595.0 * torch.log10(1.0 + hz / 700.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    logstep = math.log(6.4) / 27.0
    linear = hz / f_sp
    log_part = min_log_hz / f_sp + torch.log(hz.clamp(min=min_log_hz) / min_log_hz) / logstep
    return torch.where(hz >= min_log_hz, log_part, linear)


def mel_to_hz(mel: torch.Tensor, htk: bool) -> torch.Tensor:
    if htk:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return torch.where(mel >= min_log_mel, min_log_hz * torch.exp(logstep * (mel - min_log_mel)), f_sp * mel)


def mel_filterbank(sample_rate: float, n_fft: int, n_mels: int, f_min: float = 0.0,
                   f_max: float | None = None, mel_scale: str = "slaney",
                   norm: str | float | None = "slaney", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    f_min, f_max = validate.frequency_range(sample_rate, f_min, f_max)
    htk = validate.choice("mel_scale", mel_scale, ("slaney", "htk")) == "htk"
    p = validate.filter_norm(norm)
    f64 = torch.float64
    # bin k of the real FFT sits at k * sample_rate / n_fft (below Nyquist for odd n_fft)
    fft_freqs = torch.fft.rfftfreq(n_fft, d=1.0 / sample_rate, dtype=f64)
    mels = torch.linspace(float(hz_to_mel(torch.tensor(f_min, dtype=f64), htk)),
                          float(hz_to_mel(torch.tensor(f_max, dtype=f64), htk)), n_mels + 2, dtype=f64)
    edges = mel_to_hz(mels, htk)
    fdiff = edges.diff()
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0.0)
    if p < 0:
        weights = weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    elif p > 0:
        length = weights.abs().pow(p).sum(dim=1, keepdim=True).pow(1.0 / p)
        weights = torch.where(length > 1e-300, weights / length, weights)
    return weights.to(dtype)
