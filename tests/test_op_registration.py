"""The compiled ops are PyTorch operators: ``torch.library.opcheck`` checks each one's schema, its
fake (shape-only) implementation against the real kernel, its autograd registration and its use
under torch.compile's AOT dispatch; tracing sees each op as one node."""
from __future__ import annotations

import pytest
import torch

from musicrep import ops
from musicrep._native import native_ops
from musicrep.ops import reference

F64 = torch.float64


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(26)


def _mel_args(wave: torch.Tensor, log_mode: int = 3) -> tuple:
    return (wave, 64, 16, 48, 8, 8000.0, 0.0, 4000.0, False, -1.0, 2.0, True, 0, log_mode, 1e-10, 1.0, True)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_mel_spectrogram_opcheck(rng: torch.Generator, dtype: torch.dtype) -> None:
    wave = torch.randn(2, 300, generator=rng, dtype=dtype, requires_grad=True)
    torch.library.opcheck(native_ops().mel_spectrogram, _mel_args(wave))


def test_mel_filterbank_opcheck() -> None:
    torch.library.opcheck(native_ops().mel_filterbank, (16, 512, 16000.0, 0.0, 8000.0, True, 2.0))


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_nt_xent_lse_opcheck(rng: torch.Generator, dtype: torch.dtype) -> None:
    u = torch.nn.functional.normalize(torch.randn(12, 5, generator=rng, dtype=dtype), dim=1).requires_grad_(True)
    torch.library.opcheck(native_ops().nt_xent_lse, (u, 8, 4.0))
    acc = F64 if dtype == F64 else torch.float32
    lse = native_ops().nt_xent_lse(u.detach(), 8, 4.0)
    g = torch.rand(8, generator=rng, dtype=acc)
    torch.library.opcheck(native_ops().nt_xent_lse_backward, (u.detach(), lse, g, 8, 4.0))


def test_resample_shift_opcheck(rng: torch.Generator) -> None:
    x = torch.randn(3, 200, generator=rng)
    ratio = torch.tensor([0.5, 1.0, 1.7], dtype=F64)
    start = torch.tensor([0.0, 3.5, -10.0], dtype=F64)
    torch.library.opcheck(native_ops().resample_shift, (x, ratio, start, 150, 8))


def test_trace_of_the_mel_front_end_equals_eager(rng: torch.Generator) -> None:
    """Before registration torch.jit.trace saw a pybind call and kept ``aten::empty``: the traced
    front end returned uninitialised memory. Now the trace holds the operator and reruns it."""
    from musicrep.plugins.frontends import MuleMelFrontend

    frontend = MuleMelFrontend()
    traced = torch.jit.trace(frontend, torch.randn(2, 8000, generator=rng), check_trace=False)
    assert any(n.kind() == "musicrep::mel_spectrogram" for n in traced.graph.nodes())
    for shape in ((2, 8000), (3, 12000)):
        wave = torch.randn(*shape, generator=rng)
        torch.testing.assert_close(traced(wave), frontend(wave), rtol=0, atol=0)


def test_nonfinite_samples_are_refused_inside_the_operator() -> None:
    """The NaN scan moved from a Python branch on the samples into the operator."""
    wave = torch.zeros(1, 500)
    wave[0, 7] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        native_ops().mel_spectrogram(*_mel_args(wave))
    assert torch.isnan(native_ops().mel_spectrogram(*_mel_args(wave)[:-1], False)).any()


def test_mel_gradient_through_the_operator_matches_the_reference(rng: torch.Generator) -> None:
    wave = torch.randn(2, 300, generator=rng, dtype=F64, requires_grad=True)
    kw = dict(sample_rate=8000, n_fft=64, hop_length=16, win_length=48, n_mels=8, log="log1p")
    (got,) = torch.autograd.grad(ops.mel_spectrogram(wave, **kw).square().sum(), wave)
    (want,) = torch.autograd.grad(reference.mel_spectrogram(wave, **kw).square().sum(), wave)
    torch.testing.assert_close(got, want)


@pytest.mark.cuda
def test_cuda_kernels_pass_opcheck() -> None:
    """The kernels registered under TORCH_LIBRARY_IMPL(musicrep, CUDA, m) (``make gpu-check``)."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    from musicrep._native import has_cuda_kernels

    if not has_cuda_kernels():
        pytest.skip("musicrep._C was built without CUDA kernels")
    g = torch.Generator(device="cuda").manual_seed(26)
    wave = torch.randn(2, 300, generator=g, device="cuda", requires_grad=True)
    torch.library.opcheck(native_ops().mel_spectrogram, _mel_args(wave))
    u = torch.nn.functional.normalize(torch.randn(12, 5, generator=g, device="cuda"), dim=1).requires_grad_(True)
    torch.library.opcheck(native_ops().nt_xent_lse, (u, 8, 4.0))
    x = torch.randn(3, 200, generator=g, device="cuda")
    ratio = torch.tensor([0.5, 1.0, 1.7], dtype=F64, device="cuda")
    torch.library.opcheck(native_ops().resample_shift, (x, ratio, torch.zeros(3, dtype=F64, device="cuda"), 150, 8))
