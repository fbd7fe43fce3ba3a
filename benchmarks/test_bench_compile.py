"""A whole model (front end, windows, encoder, pooling) eager vs ``torch.compile(fullgraph=True)``
(inductor): since the compiled ops are PyTorch operators, the front end is one node of the same
graph as the encoder. 8 clips of 10 s at 16 kHz, the ``mel`` front end (128 mels), 3 s windows
every 2 s; median of the rounds after one warm-up call (which compiles)."""
from __future__ import annotations

import pytest
import torch

import musicrep
from musicrep.model import Embedder

CLIPS, SECONDS, SR = 8, 10.0, 16000
MODELS = {"fcn": {}, "resnet": {"channels": [16, 32, 64, 128], "dim": 128}}
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["eager", "compiled"])
@pytest.mark.parametrize("model", list(MODELS))
def test_model_compiled_vs_eager(benchmark, model: str, mode: str, device: str) -> None:
    torch.manual_seed(0)
    embedder = Embedder(musicrep.get_component("frontend", "mel"),
                        musicrep.get_component("encoder", model, **MODELS[model])).to(device).eval()
    fn = torch.compile(embedder, fullgraph=True) if mode == "compiled" else embedder
    wave = 0.1 * torch.randn(CLIPS, int(SECONDS * SR), device=device)

    def run() -> torch.Tensor:
        with torch.no_grad():
            out = fn(wave)
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    run()  # compiles (compiled), warms caches (both)
    benchmark.pedantic(run, rounds=5, iterations=1)
    benchmark.extra_info["x_realtime"] = round(CLIPS * SECONDS / benchmark.stats.stats.median, 1)
    torch._dynamo.reset()
