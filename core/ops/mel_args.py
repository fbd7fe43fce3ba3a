"""The arguments of ``mel_spectrogram`` checked once, shared by the compiled op and its reference.

Every problem becomes a ValueError naming the argument here, before anything reaches C++.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from musicrep.ops import validate

PAD_MODES = ("reflect", "constant", "replicate")
LOG_MODES = ("none", "log", "db", "log1p", "log10p")


@dataclass(frozen=True)
class MelArgs:
    """Validated settings of one mel spectrogram (defaults already filled in)."""

    sample_rate: float
    n_fft: int
    hop_length: int
    win_length: int
    n_mels: int
    f_min: float
    f_max: float
    power: float
    center: bool
    pad_mode: str
    mel_scale: str
    norm: str | float | None
    log: str
    log_floor: float
    log_scale: float
    top_db: float | None

    @property
    def pad(self) -> int:
        return self.n_fft // 2 if self.center else 0

    def frames(self, num_samples: int) -> int:
        """Frames for a clip of ``num_samples``, as torch.stft counts them."""
        return 1 + (num_samples + 2 * self.pad - self.n_fft) // self.hop_length

    def check_length(self, num_samples: int) -> None:
        if not self.center and num_samples < self.n_fft:
            raise ValueError(f"the clip has {num_samples} samples, fewer than n_fft={self.n_fft}; "
                             "use center=True or a smaller n_fft")
        if self.center and self.pad_mode == "reflect" and num_samples <= self.pad:
            raise ValueError(f"reflect padding needs more than n_fft // 2 = {self.pad} samples, the clip "
                             f"has {num_samples}; use pad_mode='constant' or a smaller n_fft")


def mel_args(sample_rate: float, n_fft: int, hop_length: int | None, win_length: int | None,
             n_mels: int, f_min: float, f_max: float | None, power: float, center: bool,
             pad_mode: str, mel_scale: str, norm: str | float | None, log: str, log_floor: float,
             log_scale: float, top_db: float | None) -> MelArgs:
    n_fft = validate.n_fft(n_fft)
    win_length = n_fft if win_length is None else validate.positive_int("win_length", win_length)
    if win_length > n_fft:
        raise ValueError(f"win_length={win_length} must not exceed n_fft={n_fft}")
    hop_length = (max(win_length // 4, 1) if hop_length is None
                  else validate.positive_int("hop_length", hop_length))
    n_mels = validate.positive_int("n_mels", n_mels)
    f_min, f_max = validate.frequency_range(sample_rate, f_min, f_max)
    power = validate.finite_number("power", power)
    if power <= 0:
        raise ValueError(f"power must be positive (2 power, 1 magnitude), got {power}")
    if not isinstance(center, bool):
        raise ValueError(f"center must be True or False, got {center!r}")
    validate.choice("pad_mode", pad_mode, PAD_MODES)
    validate.choice("mel_scale", mel_scale, ("slaney", "htk"))
    validate.filter_norm(norm)
    validate.choice("log", log, LOG_MODES)
    log_floor = validate.finite_number("log_floor", log_floor)
    if log_floor <= 0:
        raise ValueError(f"log_floor must be positive, got {log_floor}")
    log_scale = validate.finite_number("log_scale", log_scale)
    if log_scale <= 0:
        raise ValueError(f"log_scale must be positive, got {log_scale}")
    if top_db is not None:
        top_db = validate.finite_number("top_db", top_db)
        if top_db <= 0 or log != "db":
            raise ValueError(f"top_db must be positive and needs log='db', got top_db={top_db}, log={log!r}")
    return MelArgs(float(sample_rate), n_fft, hop_length, win_length, n_mels, f_min, f_max, power,
                   center, pad_mode, mel_scale, norm, log, log_floor, log_scale, top_db)


def check_wave(wave: object, check_finite: bool = True) -> torch.Tensor:
    """``wave`` as ``[B, T]`` (a ``[T]`` clip gains a batch axis): float32/64, non-empty, finite
    (``check_finite``; the compiled mel operator scans the samples itself)."""
    if not isinstance(wave, torch.Tensor):
        raise ValueError(f"wave must be a torch.Tensor, got {type(wave).__name__}")
    if wave.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"wave must be float32 or float64, got {wave.dtype}")
    if wave.dim() not in (1, 2):
        raise ValueError(f"wave must be [T] or [B, T], got shape {tuple(wave.shape)}")
    validate.has_data("wave", wave)
    batch = wave.reshape(1, -1) if wave.dim() == 1 else wave
    if batch.shape[0] == 0 or batch.shape[1] == 0:
        raise ValueError(f"wave is empty: shape {tuple(wave.shape)}")
    # a finite sum proves every sample finite in one cheap reduction; only an overflowing or
    # non-finite sum needs the elementwise scan (eager only: see validate.tracing)
    if check_finite and not validate.tracing() and not torch.isfinite(batch.sum()) and not bool(torch.isfinite(batch).all()):
        raise ValueError("wave contains NaN or infinite samples")
    return batch


def apply_top_db(out: torch.Tensor, top_db: float | None) -> torch.Tensor:
    """Clamp each spectrogram to ``top_db`` below its own maximum (librosa's power_to_db)."""
    if top_db is None:
        return out
    peak = out.amax(dim=(-2, -1), keepdim=True)
    return torch.maximum(out, peak - top_db)
