"""Built-in encoders: features ``[B, F, frames]`` -> embeddings ``[B, D]``."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from musicrep.config import interval, invalid, items, non_negative, nyquist, positive
from musicrep.ops.reference.filterbank import band_edges
from musicrep.hookspecs import Factories, hookimpl
from musicrep.layers import Activation, collect_layers


#: sane ranges for the CNN configs, checked with the TOML (a size beyond the machine is refused
#: anyway when the module is counted on the meta device; these keep even the counting quick):
#: stages (each halves the map, so a few suffice), channels per stage and embedding width
MAX_STAGES, MAX_CHANNELS, MAX_DIM = 16, 8192, 65536


def channel_list(default: list[int]) -> list[int]:
    """A ``channels`` key: 1 to ``MAX_CHANNELS`` per stage (at most ``MAX_STAGES`` stages: ``check_stages``)."""
    return items(interval(1, MAX_CHANNELS), default, what="channel count")


def check_stages(channels: Sequence[int]) -> None:
    if len(channels) > MAX_STAGES:
        raise invalid("channels", f"{len(channels)} stages; at most {MAX_STAGES}")


def run_stages(body: nn.Sequential, ends: list[int], x: torch.Tensor) -> Iterator[torch.Tensor]:
    """Run ``body`` on ``x``, yielding the output after each stage (``ends``: the index one past
    each stage's last module), lazily: a caller that stops early skips the deeper stages."""
    start = 0
    for end in ends:
        for index in range(start, end):
            x = body[index](x)
        yield x
        start = end


def block_names(count: int) -> tuple[str, ...]:
    """The named layers of an encoder with ``count`` stages: ``block1`` .. ``block<count>``."""
    return tuple(f"block{i + 1}" for i in range(count))


class ConvStack(nn.Sequential):
    """The small CNNs' shared body over ``[B, 1, F, frames]``: batch norm on the input, then per
    stage a 3x3 convolution, batch norm, ReLU and a max pool by ``(freq, time)`` (none where it
    is ``(1, 1)``). ``out_channels``: the last stage's channels; ``stages(x)`` yields each
    stage's output (the encoders' named layers ``block1`` ..)."""

    def __init__(self, channels: list[int], pools: list[tuple[int, int]]) -> None:
        layers: list[nn.Module] = [nn.BatchNorm2d(1)]
        ends, previous = [], 1
        for out, pool in zip(channels, pools):
            layers += [nn.Conv2d(previous, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            if tuple(pool) != (1, 1):
                layers.append(nn.MaxPool2d(pool, ceil_mode=True))
            ends.append(len(layers))
            previous = out
        super().__init__(*layers)
        self.out_channels, self.ends = previous, ends

    def stages(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        return run_stages(self, self.ends, x)


class FCN(nn.Module):
    """Compact fully-convolutional CNN (MusiCNN/FCN style) that trains on a CPU."""

    @dataclass
    class Config:
        channels: list[int] = channel_list([16, 32, 64, 128])
        dim: int = interval(1, MAX_DIM, 128)
        dropout: float = interval(0, 1, 0.0, high_open=True)

        def __post_init__(self) -> None:
            check_stages(self.channels)

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.dim = config.dim
        self.body = ConvStack(config.channels, [(2, 2)] * len(config.channels))
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(2 * self.body.out_channels, config.dim))
        self.layer_names = block_names(len(config.channels))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The last map ``[B, C, F', frames']`` -> the embedding, pooled over both axes."""
        return self.head(torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.embed(self.body(features.unsqueeze(1)))

    def forward_layers(self, features: torch.Tensor, names: Sequence[str]) -> dict[str, Activation]:
        """Each stage's map ``[B, C, F', frames']`` and ``out`` (see ``musicrep.layers``)."""
        return collect_layers(self.layer_names, self.body.stages(features.unsqueeze(1)), names, self.embed)


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
        channels: list[int] = channel_list([32, 64, 128, 256])
        blocks: list[int] = items(interval(1, 64), [2, 2, 2, 2], length="channels")  # one per stage
        dim: int = interval(1, MAX_DIM, 256)

        def __post_init__(self) -> None:
            check_stages(self.channels)

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config, self.dim = config, config.dim
        stem = config.channels[0]
        layers: list[nn.Module] = [nn.BatchNorm2d(1), nn.Conv2d(1, stem, 3, 1, 1, bias=False),
                                   nn.BatchNorm2d(stem), nn.ReLU(inplace=True)]
        previous, self.ends = stem, []
        for i, (channels, blocks) in enumerate(zip(config.channels, config.blocks)):
            for b in range(blocks):
                layers.append(BasicBlock(previous, channels, 2 if b == 0 and i > 0 else 1))
                previous = channels
            self.ends.append(len(layers))
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(previous, config.dim)
        self.layer_names = block_names(len(config.channels))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The last map -> the embedding, averaged over both axes."""
        return self.head(x.mean(dim=(2, 3)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.embed(self.body(features.unsqueeze(1)))

    def forward_layers(self, features: torch.Tensor, names: Sequence[str]) -> dict[str, Activation]:
        """Each stage's map ``[B, C, F', frames']`` (stem included in the first) and ``out``."""
        return collect_layers(self.layer_names, run_stages(self.body, self.ends, features.unsqueeze(1)), names,
                              self.embed)


class MelStats(nn.Module):
    """Hand-crafted baseline: mean and std over time of the features, their MFCCs and chroma."""

    @dataclass
    class Config:
        n_features: int = positive(128)
        n_mfcc: int = interval(0, "n_features", 20)
        chroma: bool = False  # a 12-class pitch profile from the mel bands (their centres: the keys below)
        sample_rate: int = positive(16000)  # the front end's: where its mel bands sit, for chroma
        f_min: float = non_negative(0.0)
        f_max: float | None = interval("f_min", nyquist, None, low_open=True)  # None: Nyquist
        mel_scale: Literal["slaney", "htk"] = "slaney"

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        n = config.n_features
        self.dim = 2 * (n + config.n_mfcc + (12 if config.chroma else 0))
        k = torch.arange(config.n_mfcc, dtype=torch.float64)[:, None]
        basis = torch.cos(torch.pi / n * (torch.arange(n, dtype=torch.float64) + 0.5) * k)  # DCT-II
        basis[:1] *= 1 / 2**0.5  # (n_mfcc may be 0)
        self.register_buffer("dct", (basis * (2.0 / n) ** 0.5).float(), persistent=False)
        chroma = chroma_weights(config) if config.chroma else torch.zeros(0, n)
        self.register_buffer("chroma_weights", chroma, persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.shape[1] != self.config.n_features:
            raise ValueError(f"mel-stats was configured with n_features={self.config.n_features} but the "
                             f"front end gives {features.shape[1]}; set encoder n_features to match")
        parts = [features, torch.einsum("kf,bft->bkt", self.dct, features)]
        if self.config.chroma:
            chroma = torch.einsum("cf,bft->bct", self.chroma_weights, features)
            parts.append(chroma - chroma.mean(dim=1, keepdim=True))  # the profile, not the loudness
        both = torch.cat(parts, dim=1)
        return torch.cat([both.mean(dim=2), both.std(dim=2, unbiased=False)], dim=1)


def chroma_weights(config: MelStats.Config) -> torch.Tensor:
    """``[12, n_features]``: each pitch class's weighted mean over the mel bands.

    A band's weight for a class falls off with the circular distance (in semitones) between
    the class and the band's centre, over a width set by the band's own width: a band narrower
    than a semitone votes for one class, one spanning an octave for all of them alike.
    """
    edges = band_edges(config.sample_rate, config.n_features, config.f_min, config.f_max, config.mel_scale)
    semitones = 12 * torch.log2(edges.clamp(min=1.0) / 440.0)  # A4 = 0
    centre, width = semitones[1:-1], (semitones[2:] - semitones[:-2]) / 2
    offset = (torch.arange(12, dtype=torch.float64)[:, None] - 9 - centre[None, :]) % 12   # pitch class 0 is C
    distance = torch.minimum(offset, 12 - offset)
    weights = torch.exp(-0.5 * (distance / width.clamp(min=0.5)[None, :]) ** 2)
    weights = weights / weights.sum(dim=0, keepdim=True)          # each band spreads one vote
    return (weights / weights.sum(dim=1, keepdim=True)).float()   # each class: a weighted mean


@hookimpl
def musicrep_encoders() -> Factories:
    return {"fcn": FCN, "resnet": ResNet, "mel-stats": MelStats}
