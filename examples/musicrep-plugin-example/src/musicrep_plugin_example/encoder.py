"""A tiny 2-D CNN encoder: small enough to pre-train in seconds on a CPU."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from musicrep.config import positive


class TinyCNN(nn.Module):
    """Tiny 2-D CNN (example plugin): two conv layers, mean+max pooling, a linear head."""

    @dataclass
    class Config:
        channels: int = positive(16)
        dim: int = positive(64)

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.dim = config.dim  # the encoder contract: the size of what forward returns
        c = config.channels
        self.body = nn.Sequential(
            nn.BatchNorm2d(1),
            nn.Conv2d(1, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(2 * c, config.dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Features ``[B, F, frames]`` (any F and frames) -> embeddings ``[B, dim]``."""
        x = self.body(features.unsqueeze(1))
        return self.head(torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1))
