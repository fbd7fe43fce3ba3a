"""The mel spectrogram in plain PyTorch: torch.stft, then the reference filter matrix, then the log."""
from __future__ import annotations

import torch

from musicrep.ops.mel_args import MelArgs, apply_top_db, check_wave, mel_args
from musicrep.ops.reference.filterbank import mel_filterbank


def mel_spectrogram(wave: torch.Tensor, sample_rate: float, n_fft: int = 1024,
                    hop_length: int | None = None, win_length: int | None = None, n_mels: int = 128,
                    f_min: float = 0.0, f_max: float | None = None, power: float = 2.0,
                    center: bool = True, pad_mode: str = "reflect", mel_scale: str = "slaney",
                    norm: str | float | None = "slaney", log: str = "none", log_floor: float = 1e-10,
                    log_scale: float = 1.0, top_db: float | None = None,
                    check_finite: bool = True) -> torch.Tensor:
    """The same contract as ``musicrep.ops.mel_spectrogram``; any device, differentiable."""
    args = mel_args(sample_rate, n_fft, hop_length, win_length, n_mels, f_min, f_max, power, center,
                    pad_mode, mel_scale, norm, log, log_floor, log_scale, top_db)
    batch = check_wave(wave, check_finite)
    args.check_length(batch.shape[1])
    out = apply_top_db(mel_spectrogram_unchecked(batch, args), args.top_db)
    return out[0] if wave.dim() == 1 else out


def mel_spectrogram_unchecked(batch: torch.Tensor, args: MelArgs, window: torch.Tensor | None = None,
                              filters: torch.Tensor | None = None) -> torch.Tensor:
    """``[B, n_mels, frames]`` of ``[B, T]`` with settings already validated (before top_db).

    ``window`` and ``filters``: the Hann window and the filter bank when the caller holds them
    (musicrep.export keeps them as constants of the exported graph); computed here otherwise.
    """
    if window is None:
        window = torch.hann_window(args.win_length, dtype=batch.dtype, device=batch.device)
    spec = torch.stft(batch, args.n_fft, args.hop_length, args.win_length, window, center=args.center,
                      pad_mode=args.pad_mode, return_complex=True)
    power = spec.real.square() + spec.imag.square()
    if args.power != 2.0:
        power = power.pow(args.power / 2)
    if filters is None:
        filters = mel_filterbank(args.sample_rate, args.n_fft, args.n_mels, args.f_min, args.f_max,
                                 args.mel_scale, args.norm, dtype=batch.dtype).to(batch.device)
    return log_compress(filters @ power, args.log, args.log_floor, args.log_scale)


def log_compress(x: torch.Tensor, log: str, floor: float = 1e-10, scale: float = 1.0) -> torch.Tensor:
    """The log modes of ``mel_spectrogram`` (also used by the front ends that wrap nnAudio)."""
    if log == "log":
        return x.clamp(min=floor).log()
    if log == "db":
        return 10 * x.clamp(min=floor).log10()
    if log == "log1p":
        return (scale * x).log1p()
    if log == "log10p":
        return (scale * x).log1p() / torch.log(torch.tensor(10.0, dtype=x.dtype))
    return x
