"""Variable-ratio resampling of a batch, each item at its own speed (compiled; no gradient).

This is the engine of the ``pitch-shift`` augmentation: reading an item at ratio r changes its
pitch and its tempo together by r, like a tape played fast or slow. Augmentations are never
differentiated, so the op has no backward: an input that requires grad is refused rather than
silently cut from the graph.
"""
from __future__ import annotations

import torch

from musicrep._native import has_cuda_kernels, native_ops
from musicrep.ops import validate

#: Ratios outside [1/MAX_RATIO, MAX_RATIO] are refused: the kernel's taps grow with the ratio.
MAX_RATIO = 16.0
#: The most zero crossings of the sinc on each side of a tap.
MAX_ZEROS = 64


def _per_item(name: str, value: object, batch: int, device: torch.device) -> torch.Tensor:
    """A float64 ``[batch]`` tensor on ``device`` from a number or a ``[batch]`` tensor."""
    if isinstance(value, torch.Tensor):
        validate.has_data(name, value)
        if value.dim() == 0:
            value = value.expand(batch)
        if value.dim() != 1 or value.shape[0] != batch:
            raise ValueError(f"{name} must be a number or a [batch={batch}] tensor, got shape "
                             f"{tuple(value.shape)}")
        if value.is_complex() or not (value.is_floating_point() or value.dtype in (
                torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
            raise ValueError(f"{name} must hold real numbers, got {value.dtype}")
        out = value.detach().to(device=device, dtype=torch.float64).contiguous()
    else:
        out = torch.full((batch,), validate.finite_number(name, value), dtype=torch.float64, device=device)
    # eager only (validate.tracing): traced, the operator's own check stands
    if not validate.tracing() and not bool(torch.isfinite(out).all()):
        raise ValueError(f"{name} must be finite")
    return out


def check_arguments(x: object, ratio: object, start: object, length: object, zeros: object
                    ) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """``(ratio, start, length, zeros)`` checked and normalised; shared with the reference."""
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"x must be a [batch, time] tensor, got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got {x.dtype}")
    validate.has_data("x", x)
    batch, time = x.shape
    if time == 0:
        raise ValueError("x must have at least one sample per item (time > 0)")
    zeros = validate.positive_int("zeros", zeros)
    if zeros > MAX_ZEROS:
        raise ValueError(f"zeros must be at most {MAX_ZEROS}, got {zeros}")
    length = time if length is None else validate.positive_int("length", length)
    ratio = _per_item("ratio", ratio, batch, x.device)
    if not validate.tracing() and bool(((ratio < 1 / MAX_RATIO) | (ratio > MAX_RATIO)).any()):
        raise ValueError(f"ratio must lie in [1/{MAX_RATIO:g}, {MAX_RATIO:g}], got values in "
                         f"[{ratio.min().item():g}, {ratio.max().item():g}]")
    if start is None:
        start = centred_start(time, length, ratio)
    else:
        start = _per_item("start", start, batch, x.device)
    return ratio, start, length, zeros


def centred_start(time: int, length: int, ratio: torch.Tensor) -> torch.Tensor:
    """Where to start reading so the output's centre falls on the input's centre."""
    return (time - 1) / 2 - (length - 1) / 2 * ratio


def semitones_to_ratio(semitones: torch.Tensor | float) -> torch.Tensor | float:
    """The speed ratio that moves every frequency by ``semitones`` (12 per octave)."""
    if isinstance(semitones, torch.Tensor):
        return torch.exp2(semitones / 12)
    return 2.0 ** (semitones / 12)


def resample_shift(x: torch.Tensor, ratio: torch.Tensor | float, start: torch.Tensor | float | None = None,
                   length: int | None = None, zeros: int = 8) -> torch.Tensor:
    """Read item b of ``x`` ``[batch, time]`` at input positions ``start[b] + n * ratio[b]``.

    Windowed-sinc interpolation (Hann window, ``zeros`` zero crossings each side), low-passed
    at ``min(1, 1 / ratio)`` of Nyquist so that speeding up does not alias; the input is zero
    outside ``[0, time)``. ``ratio > 1`` plays faster (higher, shorter); ``semitones_to_ratio``
    converts a pitch shift. ``start=None`` centres the output on the input; ``length`` defaults
    to ``time``, so a sped-up item is padded with zeros at both ends and a slowed one cropped.
    float32 and float64 are computed natively; float16/bfloat16 via float32. CPU or CUDA by the
    device of ``x``. No gradient (see the module doc).
    """
    ratio, start, length, zeros = check_arguments(x, ratio, start, length, zeros)
    if x.requires_grad and torch.is_grad_enabled():
        raise ValueError("x requires grad, but resample_shift has no gradient (augmentations are "
                         "not differentiated); pass x.detach() or run under torch.no_grad()")
    validate.native_device("x", x)
    if x.device.type == "cuda" and not has_cuda_kernels():
        raise ValueError("x is on CUDA but musicrep._C was built without CUDA kernels; reinstall "
                         "musicrep with a CUDA build of torch")
    compute = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    out = native_ops().resample_shift(x.detach().to(compute).contiguous(), ratio, start, length, zeros)
    return out.to(x.dtype)


__all__ = ["MAX_RATIO", "centred_start", "resample_shift", "semitones_to_ratio"]
