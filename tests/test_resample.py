"""musicrep.ops.resample_shift (compiled) against its plain-PyTorch reference, and its physics."""
from __future__ import annotations

import math

import pytest
import torch

from musicrep import ops
from musicrep.ops import reference


def random_case(rng: torch.Generator, dtype: torch.dtype, batch: int = 5, time: int = 700):
    x = torch.randn(batch, time, generator=rng, dtype=torch.float64).to(dtype)
    # speeds from well below to well above 1, so both kernel widths (scale 1 and 1/ratio) run
    ratio = torch.exp2(torch.empty(batch, dtype=torch.float64).uniform_(-1.5, 1.5, generator=rng))
    start = torch.empty(batch, dtype=torch.float64).uniform_(-50, 50, generator=rng)
    return x, ratio, start


@pytest.mark.parametrize("length", [None, 333, 1201])
@pytest.mark.parametrize("zeros", [1, 8, 17])
def test_float64_matches_reference(rng: torch.Generator, length: int | None, zeros: int) -> None:
    x, ratio, start = random_case(rng, torch.float64)
    got = ops.resample_shift(x, ratio, start, length=length, zeros=zeros)
    want = reference.resample_shift(x, ratio, start, length=length, zeros=zeros)
    assert got.shape == want.shape == (x.shape[0], length or x.shape[1])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("centred", [True, False])
def test_float32_matches_reference(rng: torch.Generator, centred: bool) -> None:
    x, ratio, start = random_case(rng, torch.float32)
    start = None if centred else start
    got = ops.resample_shift(x, ratio, start)
    want = reference.resample_shift(x.double(), ratio, start)
    assert got.dtype == torch.float32
    # relative to the signal's scale: the sums cancel, so per-sample relative error is meaningless
    assert (got.double() - want).abs().max() <= 1e-4 * want.abs().max()


@pytest.mark.parametrize("ratio", [0.25, 16.0])
def test_float32_stays_accurate_over_the_longest_kernels(rng: torch.Generator, ratio: float) -> None:
    """64 zero crossings at ratio 16 is 2048 taps of phase rotation in float32."""
    x = torch.randn(1, 1500, generator=rng, dtype=torch.float64)
    got = ops.resample_shift(x.float(), ratio, zeros=64)
    want = reference.resample_shift(x, ratio, zeros=64)
    assert (got.double() - want).abs().max() <= 1e-4 * want.abs().max()


def test_default_start_centres_the_output(rng: torch.Generator) -> None:
    x, ratio, _ = random_case(rng, torch.float64, time=301)
    length = 201
    start = (301 - 1) / 2 - (length - 1) / 2 * ratio
    torch.testing.assert_close(ops.resample_shift(x, ratio, length=length),
                               ops.resample_shift(x, ratio, start, length=length), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_unit_ratio_at_integer_start_is_identity_shift(rng: torch.Generator, dtype: torch.dtype) -> None:
    x = torch.randn(3, 400, generator=rng, dtype=dtype)
    out = ops.resample_shift(x, 1.0, start=7.0, length=393)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(out, x[:, 7:], rtol=0, atol=tol)


@pytest.mark.parametrize("ratio", [0.8, 1.25, 1.9])
def test_impulse_moves_toward_the_centre_by_the_ratio(ratio: float) -> None:
    """A speed change: an event at distance d from the centre lands at d / ratio."""
    time = 2001
    centre = (time - 1) / 2
    x = torch.zeros(1, time, dtype=torch.float64)
    x[0, 1600] = 1.0
    out = ops.resample_shift(x, ratio)
    expected = centre + (1600 - centre) / ratio
    assert abs(out[0].argmax().item() - expected) <= 1.0


def test_speeding_up_filters_what_would_alias() -> None:
    n = torch.arange(8000, dtype=torch.float64)
    rms = lambda y: y.pow(2).mean().sqrt().item()  # noqa: E731
    inside = slice(100, 3700)  # away from the zero padding at the ends
    # 0.35 cycles/sample would land at 0.7 after doubling the speed: above Nyquist, so removed
    high = torch.sin(2 * math.pi * 0.35 * n)[None]
    assert rms(ops.resample_shift(high, 2.0, start=0.0, length=4000)[0, inside]) < 0.01 * rms(high)
    low = torch.sin(2 * math.pi * 0.1 * n)[None]
    kept = ops.resample_shift(low, 2.0, start=0.0, length=4000)[0, inside]
    assert rms(kept) == pytest.approx(rms(low), rel=0.01)


def test_half_precision_is_computed_in_float32(rng: torch.Generator) -> None:
    x = torch.randn(2, 300, generator=rng)
    out = ops.resample_shift(x.bfloat16(), 1.2)
    assert out.dtype == torch.bfloat16
    want = ops.resample_shift(x.bfloat16().float(), 1.2)
    torch.testing.assert_close(out.float(), want, rtol=0.02, atol=0.02)


@pytest.mark.parametrize("kwargs, match", [
    (dict(x=torch.zeros(10)), "x must be a \\[batch, time\\]"),
    (dict(x=torch.zeros(2, 10, dtype=torch.int32)), "floating-point"),
    (dict(x=torch.zeros(2, 0)), "time > 0"),
    (dict(ratio=0.0), "ratio must lie"),
    (dict(ratio=-1.0), "ratio must lie"),
    (dict(ratio=17.0), "ratio must lie"),
    (dict(ratio=float("inf")), "ratio must be a finite number"),
    (dict(ratio=torch.ones(3)), "ratio must be a number or a \\[batch=2\\]"),
    (dict(ratio=torch.tensor([1.0, float("nan")])), "ratio must be finite"),
    (dict(start=float("nan")), "start must be a finite number"),
    (dict(start=torch.ones(2, 1)), "start must be a number or"),
    (dict(length=0), "length must be a positive integer"),
    (dict(zeros=0), "zeros must be a positive integer"),
    (dict(zeros=65), "zeros must be at most"),
])
def test_bad_arguments_raise_value_error(kwargs: dict, match: str) -> None:
    args = dict(x=torch.zeros(2, 10), ratio=1.0, start=None, length=None, zeros=8) | kwargs
    with pytest.raises(ValueError, match=match):
        ops.resample_shift(**args)
    with pytest.raises(ValueError, match=match):
        reference.resample_shift(**args)


def test_no_gradient_is_refused_not_silently_dropped() -> None:
    x = torch.zeros(2, 10, requires_grad=True)
    with pytest.raises(ValueError, match="no gradient"):
        ops.resample_shift(x, 1.1)
    with torch.no_grad():
        assert ops.resample_shift(x, 1.1).shape == (2, 10)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(rng: torch.Generator, dtype: torch.dtype) -> None:
    x, ratio, start = random_case(rng, dtype)
    want = ops.resample_shift(x, ratio, start)
    got = ops.resample_shift(x.cuda(), ratio.cuda(), start.cuda())
    assert got.device.type == "cuda" and got.dtype == dtype
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    assert (got.cpu().double() - want.double()).abs().max() <= tol * want.abs().max()
