"""What the operator library ``musicrep`` (``torch.ops.musicrep``, csrc/glue/library.cpp) needs
besides its C++ kernels: fake implementations, which give an output's shape, dtype and device
without running the kernel (torch.compile, torch.export and meta tensors trace with them), and
the autograd formulas. The dispatcher imports this module itself the first time it needs one
(``set_python_module`` in the library); ``musicrep._native.native()`` imports it too.

An op added to the library gets its fake here (and its autograd, if it has a gradient): see
docs/native.md, "How an op is registered".
"""
from __future__ import annotations

import torch

from musicrep import _C  # noqa: F401  (defines the library these registrations extend)
from musicrep.ops.mel_args import LOG_MODES, PAD_MODES, MelArgs
from musicrep.ops.reference.mel import mel_spectrogram_unchecked

LIB = "musicrep"


# -- mel_spectrogram ----------------------------------------------------------------------------

@torch.library.register_fake(f"{LIB}::mel_spectrogram")
def _mel_fake(wave, n_fft, hop_length, win_length, n_mels, sample_rate, f_min, f_max, htk, norm_p,
              power, center, pad_mode, log_mode, log_floor, log_scale, check_finite):
    torch._check(wave.dim() == 2, lambda: "mel_spectrogram: wave must be [B, T]")
    pad = n_fft // 2 if center else 0
    frames = 1 + (wave.shape[1] + 2 * pad - n_fft) // hop_length
    return wave.new_empty((wave.shape[0], n_mels, frames))


def _mel_setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(inputs[0])
    ctx.settings = inputs[1:16]  # everything but check_finite


def _mel_grad(ctx, grad):
    """The gradient of the fused mel spectrogram: that of ``musicrep.ops.reference``'s, recomputed
    at the same input (the fused kernel is forward-only). Plain PyTorch ops, so a compiled
    backward traces and fuses them."""
    (wave,) = ctx.saved_tensors
    args = _mel_args_of(*ctx.settings)
    _, vjp = torch.func.vjp(lambda x: mel_spectrogram_unchecked(x, args), wave)
    return (vjp(grad)[0],) + (None,) * 16


def _mel_args_of(n_fft, hop_length, win_length, n_mels, sample_rate, f_min, f_max, htk, norm_p, power,
                 center, pad_mode, log_mode, log_floor, log_scale) -> MelArgs:
    """The operator's arguments as the reference takes them."""
    norm = None if norm_p == 0 else "slaney" if norm_p == -1 else norm_p
    return MelArgs(sample_rate, n_fft, hop_length, win_length, n_mels, f_min, f_max, power, center,
                   PAD_MODES[pad_mode], "htk" if htk else "slaney", norm, LOG_MODES[log_mode], log_floor,
                   log_scale, None)


torch.library.register_autograd(f"{LIB}::mel_spectrogram", _mel_grad, setup_context=_mel_setup)


# -- mel_filterbank -----------------------------------------------------------------------------

@torch.library.register_fake(f"{LIB}::mel_filterbank")
def _filterbank_fake(n_mels, n_fft, sample_rate, f_min, f_max, htk, norm_p):
    return torch.empty((n_mels, n_fft // 2 + 1), dtype=torch.float64)


# -- nt_xent_lse --------------------------------------------------------------------------------

def _accumulation(u: torch.Tensor) -> torch.dtype:
    return torch.float64 if u.dtype == torch.float64 else torch.float32


@torch.library.register_fake(f"{LIB}::nt_xent_lse")
def _lse_fake(u, M, inv_tau):
    return u.new_empty((M,), dtype=_accumulation(u))


@torch.library.register_fake(f"{LIB}::nt_xent_lse_backward")
def _lse_backward_fake(u, lse, g, M, inv_tau):
    return u.new_empty(u.shape, dtype=_accumulation(u))


def _lse_setup(ctx, inputs, output) -> None:
    u, ctx.n_anchors, ctx.inv_tau = inputs
    ctx.save_for_backward(u, output)


def _lse_grad(ctx, grad_lse):
    u, lse = ctx.saved_tensors
    grad = torch.ops.musicrep.nt_xent_lse_backward(u, lse, grad_lse.to(lse.dtype).contiguous(),
                                                   ctx.n_anchors, ctx.inv_tau)
    return grad.to(u.dtype), None, None


torch.library.register_autograd(f"{LIB}::nt_xent_lse", _lse_grad, setup_context=_lse_setup)


# -- resample_shift (no gradient: augmentations are not differentiated) -------------------------

@torch.library.register_fake(f"{LIB}::resample_shift")
def _resample_fake(x, ratio, start, out_len, zeros):
    return x.new_empty((x.shape[0], out_len))
