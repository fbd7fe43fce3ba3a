"""Loudness and polarity: changes a listener barely hears, which the embedding should ignore."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from musicrep.augment import Augmentation, Params, bernoulli, uniform
from musicrep.config import finite, interval, probability


class Gain(Augmentation):
    """Scale each item by a gain drawn uniformly in decibels."""

    @dataclass
    class Config:
        min_db: float = interval(None, "max_db", -6.0)  # attenuate only by default: no item gets louder than it was
        max_db: float = finite(0.0)
        p: float = probability(0.5)  # probability that an item is changed

    domain = "wave"

    def sample_params(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        """``apply`` [B] bool, then ``gain_db`` [B] uniform in [min_db, max_db) (drawn for every item)."""
        b, c = x.shape[0], self.config
        apply = bernoulli(b, c.p, generator, x.device)
        return {"apply": apply, "gain_db": uniform(b, c.min_db, c.max_db, generator, x.device)}

    def apply(self, x: torch.Tensor, params: Params, generator: torch.Generator | None = None) -> torch.Tensor:
        factor = torch.where(params["apply"], torch.pow(10.0, params["gain_db"] / 20), 1.0)
        return x * factor.to(x.dtype)[:, None]


class Polarity(Augmentation):
    """Invert the sign of an item's samples (inaudible on its own)."""

    @dataclass
    class Config:
        p: float = probability(0.5)  # an even chance makes polarity a pure invariance

    domain = "wave"

    def sample_params(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        """``apply`` [B] bool: the items whose sign flips."""
        return {"apply": bernoulli(x.shape[0], self.config.p, generator, x.device)}

    def apply(self, x: torch.Tensor, params: Params, generator: torch.Generator | None = None) -> torch.Tensor:
        sign = torch.where(params["apply"], -1.0, 1.0).to(x.dtype)
        return x * sign[:, None]
