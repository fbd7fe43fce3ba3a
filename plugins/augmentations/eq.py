"""A random equaliser on a log-spectrogram: timbre changes, pitch stays where it was."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from musicrep.augment import Augmentation, Params, bernoulli, uniform
from musicrep.config import non_negative, positive, probability


class RandomEQ(Augmentation):
    """Add a random smooth curve over frequency to a log-spectrogram (a random equaliser).

    Two crops of one recording share its instruments, so a contrastive model can tell clips
    apart by their spectral envelope alone and never needs the harmony. Bending the envelope
    differently in each view takes that shortcut away while every partial stays in its band:
    pitch and key survive, unlike under ``pitch-shift``. The curve is a sum of ``n_terms``
    half-cosines over the frequency axis, each with an amplitude uniform in ``+-depth``
    (feature units: about nepers for ``log``/``log1p`` features).
    """

    @dataclass
    class Config:
        depth: float = non_negative(1.0)
        n_terms: int = positive(4)
        p: float = probability(0.8)

    domain = "spec"

    def sample_params(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        """``apply`` [B], then ``amplitude`` [B, n_terms], drawn in that order."""
        c = self.config
        apply = bernoulli(x.shape[0], c.p, generator, x.device)
        amplitude = uniform((x.shape[0], c.n_terms), -c.depth, c.depth, generator, x.device)
        return {"apply": apply, "amplitude": amplitude}

    def curve(self, n_bins: int, params: Params) -> torch.Tensor:
        """``[B, n_bins]``: the gain each item's bins get (zero for items not applied)."""
        amplitude = params["amplitude"]
        position = (torch.arange(n_bins, device=amplitude.device, dtype=torch.float32) + 0.5) / n_bins
        k = torch.arange(1, amplitude.shape[1] + 1, device=amplitude.device, dtype=torch.float32)
        basis = torch.cos(math.pi * k[:, None] * position[None, :])       # [n_terms, n_bins]
        return (amplitude @ basis) * params["apply"][:, None]

    def apply(self, x: torch.Tensor, params: Params, generator: torch.Generator | None = None) -> torch.Tensor:
        return x + self.curve(x.shape[1], params).to(x.dtype)[:, :, None]
