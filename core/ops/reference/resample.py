"""Variable-ratio windowed-sinc resampling in plain PyTorch (float64), one item at a time.

The same formula as csrc/kernels/resample.h, written out directly: every tap's weight from
``torch.sinc`` and a cosine, with no phase recurrences.
"""
from __future__ import annotations

import math

import torch

from musicrep.ops.resample import check_arguments


def resample_shift(x: torch.Tensor, ratio: torch.Tensor | float, start: torch.Tensor | float | None = None,
                   length: int | None = None, zeros: int = 8) -> torch.Tensor:
    ratio, start, length, zeros = check_arguments(x, ratio, start, length, zeros)
    time = x.shape[1]
    f64 = torch.float64
    rows = []
    for b in range(x.shape[0]):
        r = float(ratio[b])
        scale = min(1.0, 1.0 / r)
        half = zeros / scale
        t = float(start[b]) + torch.arange(length, dtype=f64, device=x.device) * r
        k = (torch.floor(t - half) + 1)[:, None] + torch.arange(math.ceil(2 * half) + 1, dtype=f64,
                                                                device=x.device)
        u = t[:, None] - k
        inside = (u.abs() < half) & (k >= 0) & (k <= time - 1)
        weight = scale * torch.sinc(scale * u) * 0.5 * (1 + torch.cos(math.pi * u / half))
        taps = x[b].to(f64)[k.clamp(0, time - 1).long()]
        rows.append((taps * torch.where(inside, weight, 0.0)).sum(dim=1))
    return torch.stack(rows).to(x.dtype) if rows else x.new_zeros(0, length)
