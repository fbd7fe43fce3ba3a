"""Pre-training throughput (clips/s) per encoder: 3 s clips at 16 kHz, batch 64, SimCLR.

One step = two augmented views through the compiled mel front end and the encoder, the fused
NT-Xent loss, backward and an AdamW update: what the trainer does per step, without data
loading (decoding runs in loader workers, in parallel with the step).
"""
from __future__ import annotations

import pytest
import torch

import musicrep
from musicrep.model import Embedder
from musicrep.objective import TrainingData
from musicrep.train import TrainModule

ENCODERS = {
    "fcn": {},
    "resnet": {"channels": [16, 32, 64, 128], "blocks": [1, 1, 1, 1], "dim": 128},
    "sfnfnet": {"preset": "tiny"},
}
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("encoder", list(ENCODERS))
def test_pretrain_step(benchmark, encoder: str, device: str) -> None:
    if encoder not in musicrep.list_components("encoder"):
        pytest.skip(f"encoder {encoder} is not installed")
    batch, sr, seconds = 64, 16000, 3.0
    frontend = musicrep.get_component("frontend", "mel", sample_rate=sr, n_mels=96 if encoder == "sfnfnet" else 64)
    embedder = Embedder(frontend, musicrep.get_component("encoder", encoder, **ENCODERS[encoder]))
    objective = musicrep.get_component("objective", "simclr")
    objective.setup(embedder.encoder.dim, TrainingData(None, 0))
    augs = [musicrep.get_component("augmentation", "gain"), musicrep.get_component("augmentation", "time-mask")]
    module = TrainModule(embedder, objective, augs).to(device)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)
    waves = torch.randn(batch, 2, int(sr * seconds), device=device) * 0.1
    generator = torch.Generator(device=device).manual_seed(0)
    autocast = device == "cuda"

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            loss = module(waves, None, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up: allocations, lazy initialisation
    benchmark.pedantic(step, rounds=3, iterations=1)
    benchmark.extra_info["clips_per_s"] = batch / benchmark.stats.stats.mean
    benchmark.extra_info["parameters"] = sum(p.numel() for p in embedder.parameters())
