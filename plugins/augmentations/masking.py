"""SpecAugment-style masks: bands of frames or of frequency bins replaced by one value."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from musicrep.augment import Augmentation, Params, bernoulli, randint
from musicrep.config import finite, interval, non_negative, positive, probability


@dataclass
class MaskConfig:
    max_width: int = interval("min_width")
    min_width: int = non_negative(0)
    n_masks: int = positive(1)  # masks per item (they may overlap)
    # the fill; none: each item's own mean, a neutral level whether the features are
    # linear or logarithmic
    value: float | None = finite(None)
    p: float = probability(0.5)


class _Mask(Augmentation):
    domain = "spec"
    dim: int  # 1: frequency bins, 2: frames

    def sample_params(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        """``apply`` [B], then ``width`` and ``start`` [B, n_masks] (long), drawn in that order.

        Widths are uniform integers in [min_width, max_width], both capped at the axis' size;
        a start is uniform among the positions where the whole mask fits.
        """
        b, c, size = x.shape[0], self.config, x.shape[self.dim]
        apply = bernoulli(b, c.p, generator, x.device)
        high = min(c.max_width, size)
        width = randint(min(c.min_width, high), high, (b, c.n_masks), generator, x.device)
        start = randint(0, size - width, (b, c.n_masks), generator, x.device)
        return {"apply": apply, "width": width, "start": start}

    def mask(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """Where the output is filled: bool, broadcastable to ``x``."""
        pos = torch.arange(x.shape[self.dim], device=x.device)
        start, end = params["start"][..., None], (params["start"] + params["width"])[..., None]
        hit = ((pos >= start) & (pos < end)).any(dim=1) & params["apply"][:, None]
        return hit[:, :, None] if self.dim == 1 else hit[:, None, :]

    def apply(self, x: torch.Tensor, params: Params, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.config.value is None:
            fill = x.mean(dim=(1, 2), keepdim=True)
        else:
            fill = torch.tensor(self.config.value, dtype=x.dtype, device=x.device)
        return torch.where(self.mask(x, params), fill, x)


class TimeMask(_Mask):
    """Mask bands of frames of a spectrogram (SpecAugment time masking)."""

    @dataclass
    class Config(MaskConfig):
        max_width: int = 40  # frames; 0.4 s at a 10 ms hop

    dim = 2


class FreqMask(_Mask):
    """Mask bands of frequency bins of a spectrogram (SpecAugment frequency masking)."""

    @dataclass
    class Config(MaskConfig):
        max_width: int = 12  # bins; an eighth of a 96-band mel spectrogram

    dim = 1
