"""The fused (log-)mel spectrogram: one compiled pass per frame, on the CPU or CUDA."""
from __future__ import annotations

import torch

from musicrep._native import has_cuda_kernels, native_ops
from musicrep.ops import validate
from musicrep.ops.mel_args import LOG_MODES, PAD_MODES, MelArgs, apply_top_db, check_wave, mel_args

#: The frame and its power spectrum live in one block's shared memory (H100/A100: 227/163 KiB).
_CUDA_SHARED_BYTES = 160 * 1024


def mel_spectrogram(wave: torch.Tensor, sample_rate: float, n_fft: int = 1024,
                    hop_length: int | None = None, win_length: int | None = None, n_mels: int = 128,
                    f_min: float = 0.0, f_max: float | None = None, power: float = 2.0,
                    center: bool = True, pad_mode: str = "reflect", mel_scale: str = "slaney",
                    norm: str | float | None = "slaney", log: str = "none", log_floor: float = 1e-10,
                    log_scale: float = 1.0, top_db: float | None = None,
                    check_finite: bool = True) -> torch.Tensor:
    """Mel spectrogram ``[B, n_mels, frames]`` of ``wave`` ``[B, T]`` (or ``[n_mels, frames]`` of ``[T]``).

    Framing, window and frame count follow ``torch.stft`` (a Hann window of ``win_length``
    centred in ``n_fft``; ``center`` pads ``n_fft // 2`` each side with ``pad_mode``), the filters
    ``librosa.filters.mel``. The spectrum never leaves the kernel, so memory is the output only.
    ``pad_mode``: ``"reflect"``, ``"constant"`` (zeros) or ``"replicate"`` (repeat the end
    samples: librosa's and NumPy's ``"edge"``).

    ``log``: ``"none"``; ``"log"`` ln(max(x, log_floor)); ``"db"`` 10 log10(max(x, log_floor)),
    optionally clamped to ``top_db`` below each spectrogram's peak; ``"log1p"`` ln(1 + log_scale x);
    ``"log10p"`` log10(1 + log_scale x) (MULE: log_scale=10000). ``check_finite=False`` skips the
    NaN/inf scan (a device sync on CUDA) for inputs already known to be finite; the scan runs
    inside the operator, so tracing (torch.compile, torch.export) meets no branch on the samples.

    Differentiable: the gradient is that of ``musicrep.ops.reference.mel_spectrogram``, recomputed
    in the backward pass (the fused kernel itself is forward-only; musicrep.ops.registration).
    """
    args = mel_args(sample_rate, n_fft, hop_length, win_length, n_mels, f_min, f_max, power, center,
                    pad_mode, mel_scale, norm, log, log_floor, log_scale, top_db)
    if isinstance(wave, torch.Tensor):
        validate.native_device("wave", wave)
    batch = check_wave(wave, check_finite=False)  # the operator scans the samples itself
    args.check_length(batch.shape[1])
    if batch.is_cuda and not has_cuda_kernels():
        raise ValueError("wave is on CUDA but musicrep._C was built without CUDA kernels; use "
                         "musicrep.ops.reference.mel_spectrogram or rebuild with a CUDA PyTorch")
    if batch.is_cuda and (args.n_fft + args.n_fft // 2 + 1) * batch.element_size() > _CUDA_SHARED_BYTES:
        raise ValueError(f"n_fft={args.n_fft} does not fit the CUDA kernel's shared memory for "
                         f"{batch.dtype}; use the CPU or musicrep.ops.reference.mel_spectrogram")
    out = apply_top_db(_compiled(batch, args, check_finite), args.top_db)
    return out[0] if wave.dim() == 1 else out


def _compiled(batch: torch.Tensor, args: MelArgs, check_finite: bool) -> torch.Tensor:
    """The operator ``musicrep::mel_spectrogram`` (on the batch's device and its current stream)."""
    return native_ops().mel_spectrogram(
        batch.contiguous(), args.n_fft, args.hop_length, args.win_length, args.n_mels,
        args.sample_rate, args.f_min, args.f_max, args.mel_scale == "htk",
        validate.filter_norm(args.norm), args.power, args.center, PAD_MODES.index(args.pad_mode),
        LOG_MODES.index(args.log), args.log_floor, args.log_scale, check_finite)
