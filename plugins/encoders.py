"""Built-in encoders: features ``[B, F, frames]`` -> embeddings ``[B, D]``."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from musicrep.config import interval, items, positive
from musicrep.hookspecs import Factories, hookimpl


class FCN(nn.Module):
    """Compact fully-convolutional CNN (MusiCNN/FCN style) that trains on a CPU."""

    @dataclass
    class Config:
        channels: list[int] = items(positive(), [16, 32, 64, 128])
        dim: int = positive(128)
        dropout: float = interval(0, 1, 0.0, high_open=True)

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


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut (He et al.'s basic residual block)."""

    def __init__(self, inputs: int, outputs: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU(inplace=True),
            nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False), nn.BatchNorm2d(outputs))
        self.shortcut = nn.Identity() if stride == 1 and inputs == outputs else nn.Sequential(
            nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    """2-D ResNet over the spectrogram (basic blocks, global average pooling)."""

    @dataclass
    class Config:
        channels: list[int] = items(positive(), [32, 64, 128, 256])
        blocks: list[int] = items(positive(), [2, 2, 2, 2], length="channels")  # one per stage
        dim: int = positive(256)

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config, self.dim = config, config.dim
        stem = config.channels[0]
        layers: list[nn.Module] = [nn.BatchNorm2d(1), nn.Conv2d(1, stem, 3, 1, 1, bias=False),
                                   nn.BatchNorm2d(stem), nn.ReLU(inplace=True)]
        previous = stem
        for i, (channels, blocks) in enumerate(zip(config.channels, config.blocks)):
            for b in range(blocks):
                layers.append(BasicBlock(previous, channels, 2 if b == 0 and i > 0 else 1))
                previous = channels
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(previous, config.dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(features.unsqueeze(1)).mean(dim=(2, 3)))


class MelStats(nn.Module):
    """Hand-crafted baseline: mean and std over time of the features and of their MFCCs."""

    @dataclass
    class Config:
        n_features: int = positive(128)
        n_mfcc: int = interval(0, "n_features", 20)

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.dim = 2 * (config.n_features + config.n_mfcc)
        n = config.n_features
        k = torch.arange(config.n_mfcc, dtype=torch.float64)[:, None]
        basis = torch.cos(torch.pi / n * (torch.arange(n, dtype=torch.float64) + 0.5) * k)  # DCT-II
        basis[0] *= 1 / 2**0.5
        self.register_buffer("dct", (basis * (2.0 / n) ** 0.5).float(), persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.shape[1] != self.config.n_features:
            raise ValueError(f"mel-stats was configured with n_features={self.config.n_features} but the "
                             f"front end gives {features.shape[1]}; set encoder n_features to match")
        mfcc = torch.einsum("kf,bft->bkt", self.dct, features)
        both = torch.cat([features, mfcc], dim=1)
        return torch.cat([both.mean(dim=2), both.std(dim=2, unbiased=False)], dim=1)


@hookimpl
def musicrep_encoders() -> Factories:
    return {"fcn": FCN, "resnet": ResNet, "mel-stats": MelStats}
