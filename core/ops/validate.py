"""Argument checks shared by the ops: bad input becomes a ValueError here, never a C++ crash."""
from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING

from musicrep.checks import choice, finite_number, positive_int  # the kit's argument checks

__all__ = ["MAX_N_FFT", "choice", "filter_norm", "finite_number", "frequency_range", "has_data",
           "n_fft", "native_device", "positive_int", "tracing"]

if TYPE_CHECKING:
    import torch


#: The largest n_fft the mel ops take: the fused kernel's tables hold n_mels x (n_fft / 2 + 1)
#: filter weights (csrc/glue/checks.h has the same bound).
MAX_N_FFT = 2**16


def n_fft(value: object) -> int:
    value = positive_int("n_fft", value)
    if value > MAX_N_FFT:
        raise ValueError(f"n_fft must be at most {MAX_N_FFT} (2**16), got {value}")
    return value


def tracing() -> bool:
    """Whether the ops are being traced (torch.compile, torch.export, torch.jit.trace) rather than
    run: a check that reads tensor values in Python is then left out (it cannot be traced, and
    the compiled operators check their values inside); eager calls always run it."""
    import torch

    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def has_data(name: str, tensor: "torch.Tensor") -> None:
    """Refuse a ``meta`` tensor (a shape without values) before a check reads its values."""
    if tensor.device.type == "meta":
        raise ValueError(f"{name} is a meta tensor: it has a shape but no values")


def native_device(name: str, tensor: "torch.Tensor") -> None:
    """Refuse a tensor on a device the compiled kernels do not serve (they run on CPU or CUDA)."""
    if tensor.device.type not in ("cpu", "cuda"):
        raise ValueError(f"{name} must be on the CPU or a CUDA device, got {tensor.device}")


def frequency_range(sample_rate: float, f_min: float, f_max: float | None) -> tuple[float, float]:
    """``(f_min, f_max)`` with ``f_max`` defaulting to Nyquist; both within ``[0, Nyquist]``."""
    sample_rate = finite_number("sample_rate", sample_rate)
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    nyquist = sample_rate / 2
    f_min = finite_number("f_min", f_min)
    f_max = nyquist if f_max is None else finite_number("f_max", f_max)
    if f_max > nyquist * (1 + 1e-9):
        raise ValueError(f"f_max={f_max} is above the Nyquist frequency {nyquist} of sample_rate={sample_rate}")
    if not 0 <= f_min < f_max:
        raise ValueError(f"need 0 <= f_min < f_max, got f_min={f_min}, f_max={f_max}")
    return f_min, f_max


def filter_norm(norm: object) -> float:
    """The filter normalisation as the native code takes it: 0 none, -1 Slaney, p > 0 unit L_p."""
    if norm is None:
        return 0.0
    if norm == "slaney":
        return -1.0
    if not isinstance(norm, bool) and isinstance(norm, numbers.Real) and norm > 0 and math.isfinite(norm):
        return float(norm)
    raise ValueError(f"norm must be None, 'slaney' or a positive number p (unit L_p norm), got {norm!r}")
