"""The ``band-cnn`` encoder: a CNN that pools over time only at its end, so frequency survives.

``fcn`` and ``resnet`` average (and max) over both axes of their last feature map, which makes
them blind to where in the spectrum a pattern sits: absolute pitch, and with it key, is gone
before any objective can keep it. ``band-cnn`` pools frequency gently and only where told
(``freq_pool``), averages the last map down to ``bands`` frequency bands, pools over time
(mean and max), and hands every band to its linear head, so the embedding still says which
band held what.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from musicrep.config import interval, items
from musicrep.hookspecs import Factories, hookimpl
from musicrep.layers import Activation, collect_layers
from musicrep.plugins.encoders import MAX_DIM, ConvStack, block_names, channel_list, check_stages


class BandCNN(nn.Module):
    """CNN that pools over time only at the end and keeps frequency bands into its head (pitch, key)."""

    @dataclass
    class Config:
        channels: list[int] = channel_list([16, 32, 64, 128])
        freq_pool: list[int] = items(interval(1, 64), [2, 2, 2, 1], length="channels")  # per stage, along frequency
        time_pool: list[int] = items(interval(1, 64), [2, 2, 2, 2], length="channels")  # per stage, along time
        bands: int = interval(1, 1024, 16)  # frequency bands the last map is averaged to, each kept into the head
        dim: int = interval(1, MAX_DIM, 128)
        dropout: float = interval(0, 1, 0.0, high_open=True)

        def __post_init__(self) -> None:
            check_stages(self.channels)

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.dim = config.dim
        self.body = ConvStack(config.channels, list(zip(config.freq_pool, config.time_pool)))
        self.bands = nn.AdaptiveAvgPool1d(config.bands)
        self.head = nn.Sequential(nn.Dropout(config.dropout),
                                  nn.Linear(2 * self.body.out_channels * config.bands, config.dim))
        self.layer_names = block_names(len(config.channels))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The last map ``[B, C, F', frames']`` -> the embedding."""
        x = torch.cat([x.mean(dim=3), x.amax(dim=3)], dim=1)  # over time only: [B, 2C, F']
        return self.head(self.bands(x).flatten(1))            # [B, 2C * bands] -> [B, dim]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.embed(self.body(features.unsqueeze(1)))

    def forward_layers(self, features: torch.Tensor, names: Sequence[str]) -> dict[str, Activation]:
        """Each stage's map ``[B, C, F', frames']`` and ``out`` (see ``musicrep.layers``)."""
        return collect_layers(self.layer_names, self.body.stages(features.unsqueeze(1)), names, self.embed)


@hookimpl
def musicrep_encoders() -> Factories:
    return {"band-cnn": BandCNN}
