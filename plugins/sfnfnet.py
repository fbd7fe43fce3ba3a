"""SF-NFNet: MULE's SlowFast normalizer-free CNN (McCallum et al., ISMIR 2022), and smaller presets.

Two pathways read the same log-mel slice ``[F, frames]``: a *slow* one that is wide and
strides hard in time (8x in its first conv), and a *fast* one that is narrow and keeps more
time resolution. Before each of the four stages the fast pathway is strided in time to the
slow one's frame rate and its channels are concatenated onto the slow pathway (a lateral
connection). The stages are normalizer-free bottleneck blocks: no batch norm; instead every
conv kernel is standardised per output channel (scaled weight standardisation), activations
are scaled to preserve variance, each residual branch ends in squeeze-excite and a learnable
gain that starts at zero, scaled by ``alpha``, and each block's input is scaled by ``beta``,
the inverse of its expected standard deviation. The embedding is the global average of
both pathways, concatenated, through one more scaled GELU.

Convolutions pad like TensorFlow's ``padding="same"`` (extra padding after, not before, when
odd), because MULE's weights were trained that way. Preset ``f0`` is MULE's SF-NFNet-F0:
input ``[B, 96, 300]`` -> ``[B, 1728]`` with 62,345,742 parameters; ``s0`` and ``tiny`` are
narrower and shallower versions of the same design for CPUs and tests.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Optional

import torch
from torch import nn
import torch.nn.functional as F

from musicrep.config import interval, items, positive
from musicrep.hookspecs import Factories, hookimpl
from musicrep.layers import Activation, collect_layers
from musicrep.plugins.encoders import block_names

#: Gains that make GELU / ReLU preserve unit variance on unit-normal input (NFNet's constants,
#: to float32 precision as MULE's weights expect).
ACTIVATION_GAINS = {"gelu": 1.7015043497085571, "relu": 1.7139588594436646}
#: Floor of ``fan_in * var(w)`` in weight standardisation.
WS_EPS = 1e-4


class Widths(NamedTuple):
    """The channel plan of one SF-NFNet at full width (``width = 1``)."""

    slow_stem: tuple[int, ...]
    fast_stem: tuple[int, ...]
    slow_stages: tuple[int, ...]
    fast_stages: tuple[int, ...]
    lateral_hidden: tuple[int, ...]   # channels after the lateral's time-strided conv
    lateral_out: tuple[int, ...]      # channels the lateral adds to the slow pathway
    slow_group: int
    fast_group: int


#: MULE's SF-NFNet-F0 channel plan.
F0_WIDTHS = Widths(slow_stem=(16, 32, 64, 128), fast_stem=(2, 4, 8, 16),
                   slow_stages=(256, 512, 1536, 1536), fast_stages=(32, 64, 192, 192),
                   lateral_hidden=(32, 32, 64, 192), lateral_out=(128, 256, 512, 3072),
                   slow_group=128, fast_group=16)
#: kernel (freq, time) and stride of each stem conv
SLOW_STEM = (((3, 1), (2, 8)), ((3, 1), (1, 1)), ((3, 1), (1, 1)), ((3, 3), (2, 2)))
FAST_STEM = (((3, 3), (2, 2)), ((3, 3), (1, 1)), ((3, 3), (1, 1)), ((3, 3), (2, 2)))
#: frequency stride of each stage's first block; the lateral conv's time kernel and stride
STAGE_FREQ_STRIDES = (1, 2, 2, 2)
LATERAL_KERNEL, LATERAL_STRIDE = 7, 4

#: preset -> (width multiplier, blocks per stage)
PRESETS: dict[str, tuple[float, tuple[int, ...]]] = {
    "f0": (1.0, (1, 2, 6, 3)),
    "s0": (0.25, (1, 1, 2, 1)),
    "tiny": (0.125, (1, 1, 1, 1)),
}


def scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow ``same`` padding of one axis: the output has ``ceil(size / stride)`` steps."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu}   # GELU in its exact (erf) form, as MULE's


class StandardizedConv2d(nn.Conv2d):
    """Conv with scaled weight standardisation and TensorFlow ``same`` padding.

    The kernel used is ``gain * (w - mean(w)) / sqrt(max(fan_in * var(w), eps))`` per output
    channel, times ``input_scale``: the constant factors the network applies to this conv's
    input (activation gain, block beta) are folded into its kernel, so no full-size tensor is
    ever multiplied by a scalar. In eval mode, when no gradient for the weights is asked for, that kernel is
    computed once and kept until the weights change (their version counter moves, e.g. on
    ``load_state_dict`` or an optimiser step), the module is moved or cast, or training mode
    is set: standardising 62M weights on every call would cost as much as a small batch.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int],
                 stride: tuple[int, int] = (1, 1), groups: int = 1, input_scale: float = 1.0) -> None:
        super().__init__(in_channels, out_channels, kernel, stride=stride, groups=groups, bias=True)
        self.input_scale = input_scale
        nn.init.kaiming_normal_(self.weight)
        nn.init.zeros_(self.bias)
        self.gain = nn.Parameter(torch.ones(out_channels))
        self._cached: tuple[tuple, torch.Tensor] | None = None

    def standardized_weight(self) -> torch.Tensor:
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
        fan_in = w[0].numel()
        scale = torch.rsqrt((var * fan_in).clamp(min=WS_EPS)) * (self.gain * self.input_scale).view(-1, 1, 1, 1)
        return (w - mean) * scale

    def kernel(self) -> torch.Tensor:
        needs_grad = torch.is_grad_enabled() and (self.weight.requires_grad or self.gain.requires_grad)
        if self.training or needs_grad or torch.compiler.is_compiling():  # traced: no cache keyed on storage
            return self.standardized_weight()
        key = (self.weight._version, self.gain._version, self.weight.data_ptr(), self.gain.data_ptr())
        if self._cached is None or self._cached[0] != key:
            with torch.inference_mode(False), torch.no_grad():
                self._cached = (key, self.standardized_weight())
        return self._cached[1]

    def train(self, mode: bool = True) -> "StandardizedConv2d":
        self._cached = None
        return super().train(mode)

    def _apply(self, fn, recurse: bool = True):  # .to(), .float(), .cuda() ... invalidate
        self._cached = None
        return super()._apply(fn, recurse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        top, bottom = tf_same_padding(x.shape[-2], kh, sh)
        left, right = tf_same_padding(x.shape[-1], kw, sw)
        if top == bottom and left == right:   # symmetric: let the conv pad, no copy
            padding = (top, left)
        else:
            x, padding = F.pad(x, (left, right, top, bottom)), (0, 0)
        return F.conv2d(x, self.kernel(), self.bias, self.stride, padding, 1, self.groups)


class SqueezeExcite(nn.Module):
    """Channel gates from the global average: ReLU bottleneck to half the channels, 2*sigmoid."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.squeeze = nn.Linear(channels, channels // 2)
        self.excite = nn.Linear(channels // 2, channels)

    def gates(self, x: torch.Tensor, scale: torch.Tensor | float = 1.0) -> torch.Tensor:
        """``[B, C, 1, 1]`` gates for ``x``, times ``scale`` (folded into the gates, not into ``x``)."""
        gates = torch.sigmoid(self.excite(F.relu(self.squeeze(x.mean(dim=(2, 3))))))
        return (gates * (2.0 * scale))[:, :, None, None]

    def forward(self, x: torch.Tensor, scale: torch.Tensor | float = 1.0) -> torch.Tensor:
        return x * self.gates(x, scale)


def group_count(channels: int, group_size: int) -> int:
    """Groups of about ``group_size`` channels that divide ``channels`` evenly."""
    groups = max(1, channels // group_size)
    while channels % groups:
        groups -= 1
    return groups


class NFBlock(nn.Module):
    """Normalizer-free bottleneck: 1x1, 1x3 (time), 3x1 (freq), 1x1, squeeze-excite, gain.

    The first block of a stage always has a projecting shortcut (1x1 standardised conv after
    an average pool when it strides in frequency), and it then feeds both branches the
    ``beta``-scaled activation; the other blocks keep the identity shortcut on their input.
    """

    def __init__(self, in_channels: int, out_channels: int, freq_stride: int, group_size: int,
                 alpha: float, beta: float, first: bool, activation: str) -> None:
        super().__init__()
        mid = out_channels // 2
        groups = group_count(mid, group_size)
        gain = ACTIVATION_GAINS[activation]
        self.act, self.alpha, self.freq_stride = ACTIVATIONS[activation], alpha, freq_stride
        # the block's input enters as beta * gain * act(x): beta * gain goes into the kernels
        self.conv1 = StandardizedConv2d(in_channels, mid, (1, 1), input_scale=beta * gain)
        # conv2 strides in frequency with a kernel 1 high, so it reads only every freq_stride-th row
        # of conv1's output (rows 0, s, 2s, ...: "same" padding adds none): forward computes
        # conv1 on those rows alone, and conv2 itself then runs unstrided -- same result, and the
        # widest 1x1 conv of each downsampling block does 1/freq_stride of the work.
        self.conv2 = StandardizedConv2d(mid, mid, (1, 3), groups=groups, input_scale=gain)
        self.conv3 = StandardizedConv2d(mid, mid, (3, 1), groups=groups, input_scale=gain)
        self.conv4 = StandardizedConv2d(mid, out_channels, (1, 1), input_scale=gain)
        self.se = SqueezeExcite(out_channels)
        self.skip_gain = nn.Parameter(torch.zeros(1))
        projects = first or freq_stride > 1 or in_channels != out_channels
        self.shortcut = (StandardizedConv2d(in_channels, out_channels, (1, 1), input_scale=beta * gain)
                         if projects else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(x)
        branch = self.act(self.conv1(h[:, :, ::self.freq_stride] if self.freq_stride > 1 else h))
        branch = self.act(self.conv2(branch))
        branch = self.conv4(self.act(self.conv3(branch)))
        gates = self.se.gates(branch, self.skip_gain * self.alpha)
        if self.shortcut is None:
            skip = x
        else:
            if self.freq_stride > 1:  # TF "same" average pool == ceil-mode pool of valid cells for k == s
                h = F.avg_pool2d(h, (self.freq_stride, 1), ceil_mode=True)
            skip = self.shortcut(h)
        return torch.addcmul(skip, branch, gates)  # skip + gated branch in one pass


class Lateral(nn.Module):
    """Fast -> slow connection: time-strided conv to the slow frame rate, then 1x1 expansion."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int) -> None:
        super().__init__()
        self.temporal = StandardizedConv2d(in_channels, hidden, (1, LATERAL_KERNEL), stride=(1, LATERAL_STRIDE))
        self.expand = StandardizedConv2d(hidden, out_channels, (1, 1))

    def forward(self, fast: torch.Tensor) -> torch.Tensor:
        return self.expand(self.temporal(fast))


class Pathway(nn.Module):
    """A stem (standardised convs, scaled activation between them) and four NF stages."""

    def __init__(self, stem_channels: tuple[int, ...], stem_layout: tuple, stage_in: list[int],
                 stage_out: tuple[int, ...], depths: tuple[int, ...], group_size: int, alpha: float,
                 activation: str) -> None:
        super().__init__()
        self.act = ACTIVATIONS[activation]
        previous = 1
        self.stem = nn.ModuleList()
        for i, (channels, (kernel, stride)) in enumerate(zip(stem_channels, stem_layout)):
            scale = ACTIVATION_GAINS[activation] if i else 1.0  # the gain of the activation before it
            self.stem.append(StandardizedConv2d(previous, channels, kernel, stride, input_scale=scale))
            previous = channels
        self.stages = nn.ModuleList()
        for i, (cin, cout, depth) in enumerate(zip(stage_in, stage_out, depths)):
            # expected std of a stage's input: 1 into the first stage, sqrt(1 + alpha^2) after
            expected = 1.0 if i == 0 else math.sqrt(1.0 + alpha**2)
            blocks = nn.ModuleList()
            for j in range(depth):
                blocks.append(NFBlock(cin if j == 0 else cout, cout, STAGE_FREQ_STRIDES[i] if j == 0 else 1,
                                      group_size, alpha, 1.0 / expected, j == 0, activation))
                # NFNet's running estimate: the first block's beta uses the stage's input
                # estimate; every block then adds alpha^2 to the variance.
                expected = math.sqrt(expected**2 + alpha**2)
            self.stages.append(blocks)

    def run_stem(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.stem) - 1
        for i, conv in enumerate(self.stem):
            x = conv(x)
            if i < last:
                x = self.act(x)
        return x

    def run_stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        for block in self.stages[i]:
            x = block(x)
        return x


def standard_normalize(x: torch.Tensor, floor: float) -> torch.Tensor:
    """Each slice to zero mean and unit std over all of its cells (std floored at ``floor``)."""
    centred = x - x.mean(dim=(1, 2), keepdim=True)
    std = centred.pow(2).mean(dim=(1, 2), keepdim=True).sqrt()
    return centred / torch.nan_to_num(std, nan=1.0, posinf=1.0, neginf=1.0).clamp(min=floor)


class SFNFNet(nn.Module):
    """SlowFast NFNet as in MULE (preset f0: 62.3M params, 1728-d); s0 and tiny for CPUs."""

    @dataclass
    class Config:
        preset: Literal["f0", "s0", "tiny"] = "f0"
        # channel multiplier; None: the preset's (1.25 at f0's depths is 97M parameters)
        width: Optional[float] = interval(0, 1.25, None, low_open=True)
        depths: Optional[list[int]] = items(interval(1, 64), None, length=4)  # blocks per stage; None: the preset's
        alpha: float = interval(0, 1, 0.2, low_open=True)
        activation: Literal["gelu", "relu"] = "gelu"
        standardize: bool = True                 # per-slice mean/std normalisation, as MULE
        std_floor: float = positive(0.01)

    def __init__(self, config: Config | None = None) -> None:
        super().__init__()
        config = config or SFNFNet.Config()
        self.config = config
        width, depths = PRESETS[config.preset]
        width = config.width if config.width is not None else width
        depths = tuple(config.depths) if config.depths is not None else depths
        w = Widths(*(tuple(scaled(c, width) for c in v) if isinstance(v, tuple) else scaled(v, width)
                     for v in F0_WIDTHS))
        # stage i of the slow pathway reads its previous output plus lateral i
        slow_in = [a + b for a, b in zip((w.slow_stem[-1],) + w.slow_stages[:-1], w.lateral_out)]
        fast_in = [w.fast_stem[-1], *w.fast_stages[:-1]]
        self.slow = Pathway(w.slow_stem, SLOW_STEM, slow_in, w.slow_stages, depths, w.slow_group,
                            config.alpha, config.activation)
        self.fast = Pathway(w.fast_stem, FAST_STEM, fast_in, w.fast_stages, depths, w.fast_group,
                            config.alpha, config.activation)
        self.laterals = nn.ModuleList(Lateral(c, h, o) for c, h, o in zip(fast_in, w.lateral_hidden, w.lateral_out))
        self.head_act, self.head_gain = ACTIVATIONS[config.activation], ACTIVATION_GAINS[config.activation]
        self.dim = w.slow_stages[-1] + w.fast_stages[-1]
        self.layer_names = block_names(len(self.laterals))

    def stages(self, features: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Slices ``[B, F, frames]`` -> each stage's (slow, fast) maps ``[B, C, F', T']``, lazily
        (the two pathways run at different frame rates)."""
        if features.dim() != 3:
            raise ValueError(f"sfnfnet expects features [B, F, frames], got shape {tuple(features.shape)}")
        if self.config.standardize:
            features = standard_normalize(features, self.config.std_floor)
        x = features.unsqueeze(1)  # channels-last where it wins: musicrep.accel.to_device converts the weights
        slow, fast = self.slow.run_stem(x), self.fast.run_stem(x)
        for i, lateral in enumerate(self.laterals):
            slow = self.slow.run_stage(i, torch.cat([slow, lateral(fast)], dim=1))
            fast = self.fast.run_stage(i, fast)
            yield slow, fast

    def embed(self, maps: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The last stage's (slow, fast) maps -> the embedding: both averaged globally."""
        slow, fast = maps
        pooled = torch.cat([slow.mean(dim=(2, 3)), fast.mean(dim=(2, 3))], dim=1)
        return self.head_act(pooled) * self.head_gain

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Slices ``[B, F, frames]`` -> ``[B, dim]``."""
        *_, last = self.stages(features)
        return self.embed(last)

    def forward_layers(self, features: torch.Tensor, names: Sequence[str]) -> dict[str, Activation]:
        """Each stage's (slow, fast) maps as ``block1`` .. ``block4`` and ``out`` (``musicrep.layers``)."""
        return collect_layers(self.layer_names, self.stages(features), names, self.embed)


@hookimpl
def musicrep_encoders() -> Factories:
    return {"sfnfnet": SFNFNet}
