"""Mixing in another item of the batch, under the item at a drawn level."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from musicrep.augment import Augmentation, Params, bernoulli, randint, uniform
from musicrep.config import finite, interval, probability


class Mix(Augmentation):
    """Add another item of the batch, its level a drawn number of dB below the item's."""

    @dataclass
    class Config:
        # the item's level over its partner's, in dB: the partner stays in the background, so
        # the two views of an item still share their main content
        min_snr_db: float = interval(None, "max_snr_db", 6.0)
        max_snr_db: float = finite(18.0)
        p: float = probability(0.3)

    domain = "wave"

    def sample_params(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        """``apply`` [B] bool, ``partner`` [B] long (never the item itself), ``snr_db`` [B].

        The partner is ``(i + offset) % B`` with the offset uniform in [1, B - 1], so every other
        item is equally likely. A batch of one has no partner: nothing is applied.
        """
        b, c = x.shape[0], self.config
        apply = bernoulli(b, c.p, generator, x.device) & (b > 1)
        offset = randint(1, max(b - 1, 1), (b,), generator, x.device)
        partner = (torch.arange(b, device=x.device) + offset) % b
        return {"apply": apply, "partner": partner,
                "snr_db": uniform(b, c.min_snr_db, c.max_snr_db, generator, x.device)}

    def apply(self, x: torch.Tensor, params: Params, generator: torch.Generator | None = None) -> torch.Tensor:
        """Partners are taken from the input batch, so the result does not depend on item order.

        A silent item stays silent (its level sets the partner's), and a silent partner adds nothing.
        """
        other = x[params["partner"]]
        power = x.float().pow(2).mean(dim=1)
        other_power = power[params["partner"]]
        weight = torch.sqrt(power / torch.pow(10.0, params["snr_db"] / 10) /
                            other_power.clamp_min(torch.finfo(torch.float32).tiny))
        weight = torch.where(params["apply"] & (other_power > 0), weight, 0.0)
        return x + other * weight.to(x.dtype)[:, None]
