"""Pitch shift by resampling: the compiled op beside the plain-PyTorch reference (and
torchaudio where installed), on a batch of 32 three-second items at 16 kHz, each at its own
ratio in +-2 semitones. ``x_realtime`` = seconds of audio processed per second.

Run: pytest benchmarks/test_bench_augment.py --benchmark-enable
"""
from __future__ import annotations

import pytest
import torch

import musicrep
from musicrep import ops
from musicrep.augment import Chain
from musicrep.ops import reference
from musicrep.ops.resample import semitones_to_ratio

SAMPLE_RATE, SECONDS, BATCH = 16000, 3.0, 32
AUDIO_SECONDS = BATCH * SECONDS
DEVICES = ["cpu", pytest.param("cuda", marks=[
    pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")])]


def batch(device: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, int(SAMPLE_RATE * SECONDS), generator=g)
    semitones = torch.empty(BATCH).uniform_(-2, 2, generator=g)
    return x.to(device), semitones_to_ratio(semitones.double()).to(device)


def run(benchmark, fn, rounds: int, device: str) -> None:
    def call():
        out = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=1)
    if benchmark.stats is None:  # --benchmark-disable: ran once as a smoke test
        return
    benchmark.extra_info["x_realtime"] = round(AUDIO_SECONDS / benchmark.stats.stats.mean, 1)
    benchmark.extra_info["audio"] = f"{BATCH} x {SECONDS:g} s at {SAMPLE_RATE} Hz"


@pytest.mark.parametrize("device", DEVICES)
def test_resample_shift_compiled(benchmark, device: str) -> None:
    benchmark.group = f"pitch shift ({device})"
    x, ratio = batch(device)
    run(benchmark, lambda: ops.resample_shift(x, ratio), rounds=10, device=device)


@pytest.mark.parametrize("device", DEVICES)
def test_resample_shift_reference(benchmark, device: str) -> None:
    benchmark.group = f"pitch shift ({device})"
    x, ratio = batch(device)
    run(benchmark, lambda: reference.resample_shift(x, ratio), rounds=3, device=device)


@pytest.mark.parametrize("device", DEVICES)
def test_resample_shift_torchaudio(benchmark, device: str) -> None:
    """torchaudio resamples a whole batch at one rational ratio: one call per item."""
    functional = pytest.importorskip("torchaudio.functional")
    benchmark.group = f"pitch shift ({device})"
    x, ratio = batch(device)
    rates = [round(SAMPLE_RATE / float(r)) for r in ratio]
    run(benchmark, lambda: [functional.resample(x[b], SAMPLE_RATE, rates[b]) for b in range(BATCH)],
        rounds=3, device=device)


@pytest.mark.parametrize("device", DEVICES)
def test_wave_chain(benchmark, device: str) -> None:
    """Every wave augmentation at its defaults but p = 1, the pitch shift included: the whole
    per-batch cost before the front end."""
    benchmark.group = f"wave augmentations ({device})"
    chain = Chain([musicrep.get_component("augmentation", name, p=1.0)
                   for name in ("gain", "polarity", "noise", "mix", "pitch-shift")])
    x, _ = batch(device)
    g = torch.Generator(device=device).manual_seed(0)
    run(benchmark, lambda: chain.apply_wave(x, g), rounds=10, device=device)
