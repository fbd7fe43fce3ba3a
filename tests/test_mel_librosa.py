"""Mel filters and mel spectrograms (compiled and reference) against librosa, odd n_fft included.

An odd n_fft has its top rfft bin below Nyquist (bin k sits at k * sample_rate / n_fft): the
sizes below always include odd ones, so a filter bank that spreads its bins up to Nyquist fails.
librosa runs in float64; our float32 output is held to 1e-4 and float64 to 1e-10 of librosa's
largest value. Each test draws its remaining settings from a fresh seed, reported on failure.
"""
from __future__ import annotations

import random

import librosa
import numpy as np
import pytest
import torch

from musicrep import ops
from musicrep.ops import reference

SAMPLE_RATES = [8000, 22050, 44100, 48000]
NORMS = [None, "slaney", 1.0, 2.0]
# odd sizes: the plain DFT (<= 32), Bluestein's FFT above it; even: radix-2 and not
ODD = [15, 33, 255, 511, 999, 1023, 2047]
EVEN = [30, 256, 600, 1000, 1024, 2048]
TOL = {torch.float32: 1e-4, torch.float64: 1e-10}


def assert_close(got: torch.Tensor, want: np.ndarray, tol: float, what: str) -> None:
    want_t = torch.from_numpy(want)
    assert got.shape == want_t.shape, what
    scale = want_t.abs().max().item()
    err = (got.double() - want_t).abs().max().item()
    assert err <= tol * scale, f"{what}: max error {err:.3g} = {err / scale:.3g} of the max {scale:.3g}"


def settings_seed(rng: torch.Generator) -> random.Random:
    return random.Random(int(torch.randint(0, 2**31, (1,), generator=rng)))


def band_edges(r: random.Random, sample_rate: int) -> tuple[float, float | None]:
    nyquist = sample_rate / 2
    f_max = r.choice([None, r.uniform(0.5, 1.0) * nyquist])
    return r.uniform(0, 0.1) * (f_max or nyquist), f_max


def n_mels_without_empty_filters(sample_rate: int, n_fft: int, n_mels: int, f_min: float,
                                 f_max: float | None, mel_scale: str) -> int:
    """Halve n_mels until every filter covers a bin: librosa warns of empty filters, and an L_p
    norm turns an edge's rounding-level weight into 1, which tests rounding, not the bin grid."""
    while n_mels > 1 and (reference.mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, mel_scale,
                                                   None, torch.float64).sum(1) == 0).any():
        n_mels //= 2
    return n_mels


@pytest.mark.parametrize("mel_scale", ["slaney", "htk"])
@pytest.mark.parametrize("norm", NORMS, ids=str)
@pytest.mark.parametrize("sample_rate", SAMPLE_RATES)
def test_filters_match_librosa(rng: torch.Generator, sample_rate: int, norm: object, mel_scale: str) -> None:
    r = settings_seed(rng)
    for n_fft in r.sample(ODD, 2) + r.sample(EVEN, 1):
        f_min, f_max = band_edges(r, sample_rate)
        n_mels = n_mels_without_empty_filters(sample_rate, n_fft, r.randint(8, 128), f_min, f_max, mel_scale)
        want = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max,
                                   htk=mel_scale == "htk", norm=norm, dtype=np.float64)
        for bank in (ops.mel_filterbank, reference.mel_filterbank):
            for dtype, tol in TOL.items():
                got = bank(sample_rate, n_fft, n_mels, f_min, f_max, mel_scale, norm, dtype=dtype)
                assert got.dtype == dtype
                assert_close(got, want, tol, f"{bank.__module__} {dtype} n_fft={n_fft} n_mels={n_mels} "
                             f"f_min={f_min} f_max={f_max}")


def test_issue_example_odd_n_fft() -> None:
    """Issue 16's report: n_fft 1023 at 22.05 kHz was 3.8e-2 off librosa."""
    fb = ops.mel_filterbank(22050, 1023, 128, dtype=torch.float64).numpy()
    lb = librosa.filters.mel(sr=22050, n_fft=1023, n_mels=128, dtype=np.float64)
    assert np.abs(fb - lb).max() / lb.max() < 1e-10


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("mel_scale", ["slaney", "htk"])
@pytest.mark.parametrize("parity", ["odd", "even"])
def test_spectrogram_matches_librosa(rng: torch.Generator, parity: str, mel_scale: str, center: bool,
                                     dtype: torch.dtype) -> None:
    """Every sample rate and every norm once per test, each with its own n_fft of the parity, a
    window shorter than n_fft in half of them, a random hop, padding, power and clip length."""
    r = settings_seed(rng)
    norms = r.sample(NORMS, len(NORMS))
    for i, (sample_rate, norm) in enumerate(zip(SAMPLE_RATES, norms)):
        n_fft = r.choice(ODD if parity == "odd" else EVEN)
        win_length = r.randint(max(1, n_fft // 3), n_fft - 1) if i % 2 == 0 else n_fft
        hop_length = r.randint(max(1, n_fft // 4), n_fft)
        pad_mode = r.choice(["reflect", "constant", "replicate"])
        f_min, f_max = band_edges(r, sample_rate)
        n_mels = n_mels_without_empty_filters(sample_rate, n_fft, r.randint(8, 128), f_min, f_max, mel_scale)
        power = r.choice([1.0, 2.0])
        length = r.randint(n_fft, 3 * n_fft + 200)
        wave = torch.randn(2, length, generator=rng, dtype=torch.float64)
        want = np.stack([librosa.feature.melspectrogram(
            y=clip, sr=sample_rate, n_fft=n_fft, hop_length=hop_length, win_length=win_length,
            center=center, pad_mode="edge" if pad_mode == "replicate" else pad_mode, power=power,
            n_mels=n_mels, fmin=f_min, fmax=f_max, htk=mel_scale == "htk", norm=norm,
            dtype=np.float64) for clip in wave.numpy()])
        kw = dict(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, win_length=win_length,
                  n_mels=n_mels, f_min=f_min, f_max=f_max, power=power, center=center,
                  pad_mode=pad_mode, mel_scale=mel_scale, norm=norm)
        for op in (ops.mel_spectrogram, reference.mel_spectrogram):
            got = op(wave.to(dtype), **kw)
            assert got.dtype == dtype
            assert_close(got, want, TOL[dtype], f"{op.__module__} {dtype} {kw} length={length}")
