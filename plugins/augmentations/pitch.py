"""Pitch shift by resampling (speed change): the compiled ``musicrep.ops.resample_shift``."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from musicrep.augment import Augmentation, Params, bernoulli, uniform
from musicrep.config import interval, probability
from musicrep.ops.resample import MAX_RATIO, MAX_ZEROS, resample_shift, semitones_to_ratio

_MAX_SEMITONES = 12 * 4  # 2 ** (48 / 12) = MAX_RATIO


class PitchShift(Augmentation):
    """Shift pitch by a drawn number of semitones, resampling (tempo moves with it, like tape)."""

    @dataclass
    class Config:
        min_semitones: float = interval(-_MAX_SEMITONES, "max_semitones", -2.0)  # +-2 semitones: a +-12% speed change
        max_semitones: float = interval(-_MAX_SEMITONES, _MAX_SEMITONES, 2.0)
        p: float = probability(0.5)
        zeros: int = interval(1, MAX_ZEROS, 8)  # zero crossings of the interpolating sinc on each side

    domain = "wave"

    def sample_params(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        """``apply`` [B] bool, then ``semitones`` [B] uniform in [min_semitones, max_semitones)."""
        b, c = x.shape[0], self.config
        apply = bernoulli(b, c.p, generator, x.device)
        return {"apply": apply,
                "semitones": uniform(b, c.min_semitones, c.max_semitones, generator, x.device)}

    def apply(self, x: torch.Tensor, params: Params, generator: torch.Generator | None = None) -> torch.Tensor:
        """Each changed item is read at speed 2^(semitones/12), centred, at its own length.

        Sped-up items are padded with zeros at both ends, slowed ones cropped at both ends;
        untouched items are copied exactly.
        """
        out = x.detach().clone()
        chosen = params["apply"].nonzero().squeeze(1)
        if chosen.numel():
            ratio = semitones_to_ratio(params["semitones"][chosen].double()).clamp(1 / MAX_RATIO, MAX_RATIO)
            out[chosen] = resample_shift(out[chosen], ratio, zeros=self.config.zeros)
        return out
