"""Additive white noise at a drawn signal-to-noise ratio."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from musicrep.augment import Augmentation, Params, bernoulli, uniform
from musicrep.config import finite, interval, probability


class Noise(Augmentation):
    """Add white Gaussian noise at an SNR drawn uniformly in decibels per item."""

    @dataclass
    class Config:
        min_snr_db: float = interval(None, "max_snr_db", 15.0)  # audible hiss that leaves the music clearly in front
        max_snr_db: float = finite(40.0)
        p: float = probability(0.3)

    domain = "wave"

    def sample_params(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        """``apply`` [B] bool, then ``snr_db`` [B] uniform in [min_snr_db, max_snr_db)."""
        b, c = x.shape[0], self.config
        apply = bernoulli(b, c.p, generator, x.device)
        return {"apply": apply, "snr_db": uniform(b, c.min_snr_db, c.max_snr_db, generator, x.device)}

    def apply(self, x: torch.Tensor, params: Params, generator: torch.Generator | None = None) -> torch.Tensor:
        """The noise is drawn for every item, then scaled to its item's exact target SNR.

        Scaling by the noise's own realised power (not its expected power) makes the SNR exact
        even for short items. A silent item has no level to measure against and stays silent.
        """
        noise = torch.randn(x.shape, generator=generator, device=x.device)
        signal_power = x.float().pow(2).mean(dim=1)
        noise_power = noise.pow(2).mean(dim=1).clamp_min(torch.finfo(torch.float32).tiny)
        target = signal_power / torch.pow(10.0, params["snr_db"] / 10)
        scale = torch.where(params["apply"], torch.sqrt(target / noise_power), 0.0)
        return x + (noise * scale[:, None]).to(x.dtype)
