"""Built-in encoders: features ``[B, F, frames]`` -> embeddings ``[B, D]``."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from musicrep.config import invalid
from musicrep.hookspecs import Factories, hookimpl


class FCN(nn.Module):
    """Compact fully-convolutional CNN (MusiCNN/FCN style) that trains on a CPU."""

    @dataclass
    class Config:
        channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
        dim: int = 128
        dropout: float = 0.0

        def __post_init__(self) -> None:
            if not self.channels or any(c <= 0 for c in self.channels):
                raise invalid("channels", f"needs positive channel counts, got {self.channels}")
            if self.dim <= 0:
                raise invalid("dim", f"must be positive, got {self.dim}")
            if not 0 <= self.dropout < 1:
                raise invalid("dropout", f"must be in [0, 1), got {self.dropout}")

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.dim = config.dim
        layers: list[nn.Module] = [nn.BatchNorm2d(1)]
        previous = 1
        for channels in config.channels:
            layers += [nn.Conv2d(previous, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2, ceil_mode=True)]
            previous = channels
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(2 * previous, config.dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.body(features.unsqueeze(1))                  # [B, C, F', frames']
        x = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        return self.head(x)


@hookimpl
def musicrep_encoders() -> Factories:
    return {"fcn": FCN}
