"""Built-in front ends: waves ``[B, T]`` to float32 features ``[B, F, frames]``.

``mel`` is the fused compiled kernel, ``torch-mel`` the same features in plain PyTorch (its
oracle), ``mule-mel`` the compiled kernel with MULE's settings as defaults, and ``nnaudio-mel`` /
``nnaudio-cqt`` wrap nnAudio (imported only when built) for comparison.

Default log compression is ``log1p``: silence (zero padding of short clips) maps to exactly 0
instead of a floor 100 dB down, values stay O(1-10) so encoders need no input rescaling, and it is
MULE's compression up to the scale (``log10(1 + 10000 x)``, the ``mule-mel`` default).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Literal

import torch
from torch import nn

from musicrep import ops
from musicrep.config import interval, invalid, non_negative, nyquist, positive
from musicrep.hookspecs import Factories, hookimpl
from musicrep.ops.mel_args import MelArgs, check_wave, mel_args
from musicrep.ops.validate import MAX_N_FFT
from musicrep.ops.reference.mel import log_compress, mel_spectrogram_unchecked

LogMode = Literal["none", "log", "db", "log1p", "log10p"]


def _invalid_from(exc: ValueError, keys: list[str]) -> Exception:
    """The ValueError of an argument check as a config error on the key its message names first."""
    message = str(exc)
    named = [(m.start(), k) for k in keys for m in [re.search(rf"\b{k}\b", message)] if m]
    return invalid(min(named)[1] if named else keys[0], message)


@dataclass
class MelConfig:
    sample_rate: int = positive(16000)
    n_fft: int = interval(1, MAX_N_FFT, 1024)
    hop_length: int = positive(256)
    win_length: int | None = interval(1, "n_fft", None)
    n_mels: int = positive(128)
    f_min: float = non_negative(0.0)
    f_max: float | None = interval("f_min", nyquist, None, low_open=True)  # None: Nyquist
    mel_scale: Literal["slaney", "htk"] = "slaney"
    norm: str | float | None = "slaney"
    power: float = positive(2.0)
    center: bool = True
    pad_mode: Literal["reflect", "constant", "replicate"] = "reflect"
    log: LogMode = "log1p"
    log_floor: float = positive(1e-10)
    log_scale: float = positive(1.0)

    def __post_init__(self) -> None:
        self.args()  # what the ranges cannot say (the filter norm) in the op's own check

    def args(self) -> MelArgs:
        """These settings as checked ``mel_spectrogram`` arguments."""
        try:
            return mel_args(self.sample_rate, self.n_fft, self.hop_length, self.win_length,
                            self.n_mels, self.f_min, self.f_max, self.power, self.center,
                            self.pad_mode, self.mel_scale, self.norm, self.log, self.log_floor,
                            self.log_scale, None)
        except ValueError as exc:
            raise _invalid_from(exc, [f.name for f in fields(self)]) from None


@dataclass
class MuleMelConfig(MelConfig):
    """MULE's front end (McCallum et al. 2022): 16 kHz, 25 ms Hann window in a 2048-point FFT,
    10 ms hop, 96 HTK bands up to 8 kHz with unit-L2 filters, log10(1 + 10000 x)."""

    n_fft: int = 2048
    hop_length: int = 160
    win_length: int | None = 400
    n_mels: int = 96
    f_max: float | None = 8000.0
    mel_scale: Literal["slaney", "htk"] = "htk"
    norm: str | float | None = 2.0
    log: LogMode = "log10p"
    log_scale: float = 10000.0


def _float_batch(wave: torch.Tensor, check_finite: bool = True) -> torch.Tensor:
    """The front-end contract: ``[B, T]`` in, float32 features out. ``check_finite=False`` where
    the op that follows scans the samples itself (the mel operator, the reference)."""
    if isinstance(wave, torch.Tensor) and wave.dim() != 2:
        raise ValueError(f"a front end takes waves [B, T], got shape {tuple(wave.shape)}")
    return check_wave(wave, check_finite).to(torch.float32)


class _MelFrontend(nn.Module):
    Config = MelConfig

    def __init__(self, config: MelConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else self.Config()
        self.settings = self.config.args()
        self.sample_rate = self.config.sample_rate
        self.hop_length = self.settings.hop_length
        self.n_features = self.settings.n_mels

    def frames(self, num_samples: int) -> int:
        """Frames of a clip of ``num_samples`` (``1 + T // hop`` when centred)."""
        return self.settings.frames(num_samples)

    def mel_kwargs(self) -> dict:
        s = self.settings
        return dict(sample_rate=s.sample_rate, n_fft=s.n_fft, hop_length=s.hop_length,
                    win_length=s.win_length, n_mels=s.n_mels, f_min=s.f_min, f_max=s.f_max,
                    power=s.power, center=s.center, pad_mode=s.pad_mode, mel_scale=s.mel_scale,
                    norm=s.norm, log=s.log, log_floor=s.log_floor, log_scale=s.log_scale)


class MelFrontend(_MelFrontend):
    """Log-mel spectrogram by the fused compiled kernel (CPU or CUDA)."""

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return ops.mel_spectrogram(_float_batch(wave, check_finite=False), **self.mel_kwargs())

    def reference_twin(self) -> nn.Module:
        """The same features in plain PyTorch ops (``torch-mel``), for an export format that has
        no form for the compiled operator (ONNX: musicrep.export)."""
        return TorchMelFrontend(self.config)


class MuleMelFrontend(MelFrontend):
    """MULE's log-mel front end (96 HTK bands, 10 ms hop at 16 kHz) by the compiled kernel."""

    Config = MuleMelConfig


class TorchMelFrontend(_MelFrontend):
    """Log-mel spectrogram in plain PyTorch (torch.stft + filter matrix): the reference.

    Its window and filters are kept as buffers (not saved: they follow from the config), so an
    exported graph holds them as constants instead of the code that computes them."""

    def __init__(self, config: MelConfig | None = None) -> None:
        super().__init__(config)
        s = self.settings
        self.register_buffer("window", torch.hann_window(s.win_length), persistent=False)
        self.register_buffer("filters", ops.reference.mel_filterbank(
            s.sample_rate, s.n_fft, s.n_mels, s.f_min, s.f_max, s.mel_scale, s.norm), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        wave = _float_batch(wave)
        self.settings.check_length(wave.shape[1])
        return mel_spectrogram_unchecked(wave, self.settings, self.window, self.filters)


@dataclass
class NnAudioMelConfig(MelConfig):
    norm: Literal["slaney"] | None = "slaney"  # nnAudio's mel filters have no other norm
    pad_mode: Literal["reflect", "constant"] = "reflect"  # nor other padding


class NnAudioMelFrontend(_MelFrontend):
    """Log-mel spectrogram by nnAudio (convolution STFT), for comparison."""

    Config = NnAudioMelConfig

    def __init__(self, config: NnAudioMelConfig | None = None) -> None:
        super().__init__(config)
        from nnAudio.features import MelSpectrogram

        s = self.settings
        self.layer = MelSpectrogram(
            sr=s.sample_rate, n_fft=s.n_fft, win_length=s.win_length, n_mels=s.n_mels,
            hop_length=s.hop_length, window="hann", center=s.center, pad_mode=s.pad_mode,
            power=s.power, htk=s.mel_scale == "htk", fmin=s.f_min, fmax=s.f_max,
            norm=1 if s.norm == "slaney" else None, verbose=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        wave = _float_batch(wave)
        self.settings.check_length(wave.shape[1])
        s = self.settings
        return log_compress(self.layer(wave), s.log, s.log_floor, s.log_scale)


@dataclass
class CqtConfig:
    sample_rate: int = positive(16000)
    hop_length: int = positive(256)
    f_min: float = positive(32.70)
    n_bins: int = positive(84)
    bins_per_octave: int = positive(12)
    log: LogMode = "log1p"
    log_floor: float = positive(1e-10)
    log_scale: float = positive(1.0)

    def __post_init__(self) -> None:
        # a bound from three fields, said in Hz (a declared bound would read as a bare count)
        top = self.f_min * 2 ** ((self.n_bins - 1) / self.bins_per_octave)
        if top >= self.sample_rate / 2:
            raise invalid("n_bins", f"the top bin ({top:.0f} Hz) must lie below Nyquist ({self.sample_rate / 2:.0f} Hz)")


class NnAudioCqtFrontend(nn.Module):
    """Log constant-Q magnitude spectrogram by nnAudio (CQT1992v2)."""

    Config = CqtConfig

    def __init__(self, config: CqtConfig | None = None) -> None:
        super().__init__()
        from nnAudio.features import CQT

        self.config = config if config is not None else CqtConfig()
        c = self.config
        self.sample_rate, self.hop_length, self.n_features = c.sample_rate, c.hop_length, c.n_bins
        self.layer = CQT(sr=c.sample_rate, hop_length=c.hop_length, fmin=c.f_min, n_bins=c.n_bins,
                         bins_per_octave=c.bins_per_octave, output_format="Magnitude", verbose=False)

    def frames(self, num_samples: int) -> int:
        """Frames of a clip of ``num_samples``: nnAudio centres its kernels, ``1 + T // hop``."""
        return 1 + num_samples // self.hop_length

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        c = self.config
        wave = _float_batch(wave)
        # nnAudio reflect-pads by half its longest (lowest-bin) kernel
        if wave.shape[1] <= self.layer.kernel_width // 2:
            raise ValueError(f"nnaudio-cqt needs clips longer than {self.layer.kernel_width // 2} samples "
                             f"(half its f_min={c.f_min} Hz kernel), got {wave.shape[1]}")
        return log_compress(self.layer(wave), c.log, c.log_floor, c.log_scale)


@hookimpl
def musicrep_frontends() -> Factories:
    return {
        "mel": MelFrontend,
        "mule-mel": MuleMelFrontend,
        "torch-mel": TorchMelFrontend,
        "nnaudio-mel": NnAudioMelFrontend,
        "nnaudio-cqt": NnAudioCqtFrontend,
    }
