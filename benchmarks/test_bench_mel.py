"""Mel front ends side by side: the fused kernel (`mel`), plain PyTorch (`torch-mel`), nnAudio.

Run: ``pytest benchmarks/test_bench_mel.py --benchmark-enable`` (MUSICREP_BENCH_ROUNDS sets the
timed rounds, default 3, after one warm-up). Each case is 10 s clips, 128 mels, hop n_fft / 4,
log1p. ``extra_info``: ``x_realtime`` (seconds of audio per second of compute, from the median)
and ``peak_mib``: on the CPU, how far the peak resident set (VmHWM, reset just before through
/proc/self/clear_refs) of a fresh process rises above its resident set during one forward call
on the same input: the output and every temporary, as the OS saw them (a subprocess, because
tracemalloc does not see torch's allocations and the import peak would mask ru_maxrss); on CUDA,
torch.cuda.max_memory_allocated above the input, for one call.

``test_mel_tables_cpu``: short clips, one at a time, where the per-call tables (window, twiddles,
Bluestein's chirp, filters) weigh: ``mel`` keeps them per configuration (the default), ``mel
rebuilt`` drops them before every round (what every call paid before they were kept).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import musicrep
from musicrep._native import has_cuda_kernels, native

IMPLS = ["mel", "torch-mel", "nnaudio-mel"]
CONFIGS = [(sr, n_fft) for sr in (16000, 22050) for n_fft in (512, 1024, 2048)]
SECONDS = 10
ROUNDS = int(os.environ.get("MUSICREP_BENCH_ROUNDS", "3"))

_RSS_SCRIPT = """
import json, sys, torch, musicrep
impl, sr, n_fft, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
frontend = musicrep.get_component("frontend", impl, **json.loads(sys.argv[5]))
wave = torch.randn(batch, sr * %d)

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])  # KiB

with torch.inference_mode():
    frontend(wave[:, : sr // 10])  # lazy initialisation (thread pools, kernels) happens before
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident set (VmHWM) to the current one
    before = status("VmRSS:")
    out = frontend(wave)
    peak = status("VmHWM:")
print((peak - before) / 1024)
""" % SECONDS


def settings(sr: int, n_fft: int) -> dict:
    return dict(sample_rate=sr, n_fft=n_fft, hop_length=n_fft // 4, n_mels=128)


def peak_rss_mib(impl: str, sr: int, n_fft: int, batch: int) -> float:
    out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, impl, str(sr), str(n_fft), str(batch),
                          json.dumps(settings(sr, n_fft))], capture_output=True, text=True, check=True)
    return round(float(out.stdout.strip().splitlines()[-1]), 1)


def run_case(benchmark, impl: str, sr: int, n_fft: int, batch: int, device: str) -> None:
    benchmark.group = f"{device} sr={sr} n_fft={n_fft} batch={batch}x{SECONDS}s"
    frontend = musicrep.get_component("frontend", impl, **settings(sr, n_fft)).to(device)
    wave = torch.randn(batch, sr * SECONDS, device=device)

    def call() -> torch.Tensor:
        with torch.inference_mode():
            out = frontend(wave)
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    if device == "cuda":
        call()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        call()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    out = benchmark.pedantic(call, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    assert out.shape == (batch, 128, frontend.frames(wave.shape[1]))
    benchmark.extra_info["x_realtime"] = round(batch * SECONDS / benchmark.stats.stats.median, 1)
    benchmark.extra_info["peak_mib"] = round(peak, 1) if device == "cuda" else peak_rss_mib(impl, sr, n_fft, batch)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("batch", [1, 32])
@pytest.mark.parametrize("sr, n_fft", CONFIGS)
def test_mel_cpu(benchmark, impl: str, sr: int, n_fft: int, batch: int) -> None:
    run_case(benchmark, impl, sr, n_fft, batch, "cpu")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("batch", [1, 32])
@pytest.mark.parametrize("sr, n_fft", CONFIGS)
def test_mel_cuda(benchmark, impl: str, sr: int, n_fft: int, batch: int) -> None:
    if impl == "mel" and not has_cuda_kernels():
        pytest.skip("musicrep._C was built without CUDA kernels")
    run_case(benchmark, impl, sr, n_fft, batch, "cuda")


TABLE_CONFIGS = {  # name: front-end settings at 16 kHz
    "n_fft 1024": dict(n_fft=1024, hop_length=256, n_mels=128),
    "mule (2048, win 400)": dict(n_fft=2048, win_length=400, hop_length=160, n_mels=96, f_max=8000.0,
                                 mel_scale="htk", norm=2.0),
    "n_fft 400 (Bluestein)": dict(n_fft=400, hop_length=160, n_mels=80),
}
TABLE_ROUNDS = int(os.environ.get("MUSICREP_BENCH_TABLE_ROUNDS", "30"))


@pytest.mark.parametrize("impl", ["mel", "mel rebuilt", "torch-mel", "nnaudio-mel"])
@pytest.mark.parametrize("seconds", [0.25, 1.0])
@pytest.mark.parametrize("config", list(TABLE_CONFIGS))
def test_mel_tables_cpu(benchmark, impl: str, seconds: float, config: str) -> None:
    benchmark.group = f"cpu tables: {config}, batch 1x{seconds}s"
    if impl == "nnaudio-mel" and TABLE_CONFIGS[config].get("norm", "slaney") != "slaney":
        pytest.skip("nnAudio's mel filters take norm 'slaney' or none")
    frontend = musicrep.get_component("frontend", impl.split()[0], sample_rate=16000, **TABLE_CONFIGS[config])
    wave = torch.randn(1, int(16000 * seconds))
    setup = native().mel_table_cache_clear if impl == "mel rebuilt" else None

    def call() -> torch.Tensor:
        with torch.inference_mode():
            return frontend(wave)

    out = benchmark.pedantic(call, setup=setup, rounds=TABLE_ROUNDS, warmup_rounds=1, iterations=1)
    assert out.shape == (1, frontend.n_features, frontend.frames(wave.shape[1]))
    benchmark.extra_info["x_realtime"] = round(seconds / benchmark.stats.stats.median, 1)
