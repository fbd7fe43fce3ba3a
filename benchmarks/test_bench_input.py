"""Input throughput at catalog scale: does decoding keep up with the encoder?

- extraction rate (x realtime) of 30 s WAVs at 44.1 kHz (decoded and resampled to 16 kHz, as a
  catalog is) with 1 and 2 decode workers, for the decode-bound ``mel-stats`` encoder (nearly
  free) and for ``fcn``; extra_info has the per-stage shares of the wall time.
- pre-training clips/s with 3 s crops from 4-minute tracks and from 5-second tracks: the same
  crops, model and steps; only the length of the files read differs.

Run: pytest benchmarks/test_bench_input.py --benchmark-enable
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import musicrep
from musicrep import accel
from musicrep.embed import extract
from musicrep.model import Embedder
from musicrep.objective import TrainingData
from musicrep.train import Source, TrainSettings, train

TRACKS, SECONDS, FILE_SR, SR = 24, 30.0, 44100, 16000
ENCODERS = {"mel-stats": {"n_features": 64, "n_mfcc": 20}, "fcn": {}}


def write_catalog(root: Path, tracks: int, seconds: float, sample_rate: int) -> Path:
    rng = np.random.default_rng(0)
    rows = ["path,label,split"]
    for i in range(tracks):
        wave = 0.1 * rng.standard_normal(int(seconds * sample_rate)).astype(np.float32)
        sf.write(root / f"t{i}.wav", wave, sample_rate, subtype="PCM_16")
        rows.append(f"t{i}.wav,{'ab'[i % 2]},{'train' if i % 3 else 'test'}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root / "manifest.csv"


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_catalog(tmp_path_factory.mktemp("catalog"), TRACKS, SECONDS, FILE_SR)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("encoder", list(ENCODERS))
def test_extraction_rate(benchmark, catalog: Path, tmp_path: Path, encoder: str, workers: int) -> None:
    task = musicrep.get_component("task", "csv", path=str(catalog))
    torch.manual_seed(0)
    embedder = Embedder(musicrep.get_component("frontend", "mel", n_mels=64),
                        musicrep.get_component("encoder", encoder, **ENCODERS[encoder]))
    runs, summaries = iter(range(100)), []

    def run() -> None:
        summaries.append(extract(embedder, task, tmp_path / f"s{next(runs)}.h5", {"run": 0}, batch_size=32,
                                 progress=False, num_workers=workers))

    benchmark.group = f"extraction, {encoder}"
    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    best = max(summaries[1:], key=lambda s: s.x_realtime)
    benchmark.extra_info.update(x_realtime=round(best.x_realtime, 1), workers=workers,
                                load=round(os.getloadavg()[0], 1),
                                **{f"{stage}_share": round(v, 3) for stage, v in best.shares.items()})


GPU_TRACKS = int(os.environ.get("MUSICREP_BENCH_GPU_TRACKS", "512"))  # 4.3 hours of 30 s tracks


@pytest.mark.cuda
def test_mule_bf16_end_to_end_on_gpu(benchmark, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """MULE (SF-NFNet-F0) in bf16 from WAV files to a finished store with extraction's defaults:
    decode workers from the core count, the batch sized from the free GPU memory, channels-last
    where ``accel.CHANNELS_LAST_ON`` says, cuDNN autotuning; goal on an H100/H200: >= 36,000x realtime (10 hours of audio a second) with a
    decode share below 0.3. Unmeasured so far: no GPU was lent to the session that wrote it."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    catalog = write_catalog(tmp_path_factory.mktemp("gpu-catalog"), GPU_TRACKS, SECONDS, FILE_SR)
    task = musicrep.get_component("task", "csv", path=str(catalog))
    torch.manual_seed(0)
    embedder = Embedder(musicrep.get_component("frontend", "mule-mel"),
                        musicrep.get_component("encoder", "sfnfnet", preset="f0"))
    runs, summaries = iter(range(100)), []

    def run() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            summaries.append(extract(embedder, task, tmp_path / f"s{next(runs)}.h5", {"run": 0},
                                     progress=False, device="cuda"))  # the defaults: batch sized from memory

    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    best = max(summaries[1:], key=lambda s: s.x_realtime)
    benchmark.extra_info.update(x_realtime=round(best.x_realtime, 1), hours_per_s=round(best.x_realtime / 3600, 2),
                                **{f"{stage}_share": round(v, 3) for stage, v in best.shares.items()})


PRETRAIN_TRACKS, CLIP = 16, 3.0


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {name: write_catalog(tmp_path_factory.mktemp(name), PRETRAIN_TRACKS, seconds, 22050)
            for name, seconds in (("5 s tracks", 5.0), ("4 min tracks", 240.0))}


@pytest.mark.parametrize("tracks", ["5 s tracks", "4 min tracks"])
def test_pretraining_clips_per_second(benchmark, folders: dict[str, Path], tmp_path: Path, tracks: str) -> None:
    task = musicrep.get_component("task", "csv", path=str(folders[tracks]))
    sources = [Source(task, item, None) for item in task.items()]
    torch.manual_seed(0)
    runs, results = iter(range(100)), []

    def run() -> None:
        embedder = Embedder(musicrep.get_component("frontend", "mel", n_mels=32),
                            musicrep.get_component("encoder", "fcn", channels=[8, 16], dim=16))
        objective = musicrep.get_component("objective", "simclr", hidden=[16], projection_dim=8)
        settings = TrainSettings(steps=12, batch_size=8, lr=1e-3, weight_decay=0.0, warmup_steps=1, grad_clip=0.0,
                                 clip_seconds=CLIP, checkpoint_every=1000, num_workers=1, precision="fp32", seed=0)
        results.append(train(embedder, objective, [], sources, TrainingData(None, 0), settings,
                             tmp_path / f"r{next(runs)}", device=torch.device("cpu"), key="bench", progress=False))

    benchmark.group = "pre-training, 3 s crops"
    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info.update(clips_per_s=round(max(r["clips_per_s"] for r in results), 1),
                                load=round(os.getloadavg()[0], 1))


#: conv encoders and their front ends: MULE's backbone and the small CNNs at their defaults
LAYOUT_ENCODERS = {"sfnfnet": ("mule-mel", {}, {"preset": "f0"}), "fcn": ("mel", {"n_mels": 96}, {}),
                   "band-cnn": ("mel", {"n_mels": 96}, {}), "resnet": ("mel", {"n_mels": 96}, {})}
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def mule_windows(frontend: str, frontend_cfg: dict, encoder: torch.nn.Module, count: int, device: str) -> torch.Tensor:
    embedder = Embedder(musicrep.get_component("frontend", frontend, **frontend_cfg), encoder)
    windows, _ = embedder.track_windows(0.1 * torch.randn(int(61 * embedder.sample_rate)))
    return windows[torch.arange(count) % len(windows)].to(device)


@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
@pytest.mark.parametrize("encoder_name", list(LAYOUT_ENCODERS))
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["inference", "training"])
def test_encoder_memory_format(benchmark, mode: str, device: str, encoder_name: str, memory_format: str) -> None:
    """An encoder on a batch of 3 s windows (8 on a CPU; on a GPU 256, 64 for training; float32,
    bf16 autocast on a GPU as MULE runs there), weights in the default layout or channels-last (what
    ``musicrep.accel.to_device`` does where it wins): inference, or a training step's forward
    and backward. Decides ``accel.CHANNELS_LAST_ON``."""
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    if mode == "training" and encoder_name == "sfnfnet" and device == "cpu":
        pytest.skip("sfnfnet f0 training on 2 CPU cores: minutes a round (pre-training on a CPU uses tiny)")
    frontend, frontend_cfg, encoder_cfg = LAYOUT_ENCODERS[encoder_name]
    torch.manual_seed(0)
    encoder = musicrep.get_component("encoder", encoder_name, **encoder_cfg)
    count = 8 if device == "cpu" else 256 if mode == "inference" else 64
    windows = mule_windows(frontend, frontend_cfg, encoder, count, device)
    layout = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
    encoder = encoder.to(device, memory_format=layout).train(mode == "training")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda")
    restore = accel.autotune_fixed_shapes(torch.device(device))

    def run() -> None:
        with autocast:
            if mode == "inference":
                with torch.inference_mode():
                    encoder(windows)
            else:
                encoder.zero_grad(set_to_none=True)
                encoder(windows).float().square().mean().backward()
        if device == "cuda":
            torch.cuda.synchronize()

    try:
        run()
        benchmark.group = f"{encoder_name} {mode}, {count} windows, {device}"
        benchmark.pedantic(run, rounds=3 if device == "cpu" else 10, iterations=1)
    finally:
        restore()
    benchmark.extra_info.update(windows_per_s=round(count / benchmark.stats.stats.min, 1),
                                load=round(os.getloadavg()[0], 1))


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("encoder_name", ["fcn", "sfnfnet"])
@pytest.mark.parametrize("device", DEVICES)
def test_encoder_compile(benchmark, device: str, encoder_name: str, compiled: bool) -> None:
    """Eager against ``torch.compile`` (``[embed] compile = true``) on fixed-shape window batches
    through ``musicrep.accel.WindowEncoder``; extra_info has the seconds the compile took (the
    first call). Inference, float32 on a CPU, bf16 autocast on a GPU."""
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    frontend, frontend_cfg, encoder_cfg = LAYOUT_ENCODERS[encoder_name]
    if device == "cpu" and encoder_name == "sfnfnet":
        encoder_cfg = {"preset": "s0"}  # f0's compile on 2 busy cores takes longer than a benchmark should
    torch.manual_seed(0)
    dev = torch.device(device)
    encoder = accel.to_device(musicrep.get_component("encoder", encoder_name, **encoder_cfg), dev).eval()
    count = 32 if device == "cpu" else 256
    windows = mule_windows(frontend, frontend_cfg, encoder, count, device)
    encode = accel.WindowEncoder(encoder, dev, count, compile=compiled)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda")
    restore = accel.autotune_fixed_shapes(dev)

    def run() -> None:
        with autocast, torch.inference_mode():
            encode(windows)
        if device == "cuda":
            torch.cuda.synchronize()

    try:
        t0 = time.perf_counter()
        run()
        first = time.perf_counter() - t0
        benchmark.group = f"compile, {encoder_name}, {count} windows, {device}"
        benchmark.pedantic(run, rounds=3 if device == "cpu" else 10, iterations=1)
    finally:
        restore()
    benchmark.extra_info.update(windows_per_s=round(count / benchmark.stats.stats.min, 1),
                                first_call_s=round(first, 1), compiled=encode.compiled is not None,
                                load=round(os.getloadavg()[0], 1))
