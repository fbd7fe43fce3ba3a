"""Extraction throughput (x realtime): wav files -> decode -> mel -> encoder -> HDF5 store.

Reported with the shares of the wall time spent waiting for decoded audio, in the front end,
the encoder and writing the store, so it shows where a catalog-scale run spends its time.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import musicrep
from musicrep.embed import extract
from musicrep.model import Embedder

TRACKS, SECONDS, SR = 24, 30.0, 16000
MODELS = {"fcn": ("mel", {"n_mels": 64}, {}), "sfnfnet": ("mule-mel", {}, {"preset": "f0"})}
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("catalog")
    rng = np.random.default_rng(0)
    rows = ["path,label,split"]
    for i in range(TRACKS):
        wave = 0.1 * rng.standard_normal(int(SECONDS * 44100)).astype(np.float32)
        sf.write(root / f"t{i}.wav", wave, 44100)  # decoded and resampled to 16 kHz, as a catalog is
        rows.append(f"t{i}.wav,{'ab'[i % 2]},{'train' if i % 3 else 'test'}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("model", list(MODELS))
def test_extract(benchmark, catalog: Path, tmp_path: Path, model: str, device: str) -> None:
    if model not in musicrep.list_components("encoder"):
        pytest.skip(f"encoder {model} is not installed")
    frontend_name, frontend_cfg, encoder_cfg = MODELS[model]
    task = musicrep.get_component("task", "csv", path=str(catalog / "manifest.csv"))
    torch.manual_seed(0)
    embedder = Embedder(musicrep.get_component("frontend", frontend_name, **frontend_cfg),
                        musicrep.get_component("encoder", model, **encoder_cfg))
    runs = iter(range(100))
    summaries = []

    def run() -> None:
        summaries.append(extract(embedder, task, tmp_path / f"s{next(runs)}.h5", {"run": 0}, batch_size=32,
                                 device=device, progress=False, num_workers=1))

    benchmark.pedantic(run, rounds=2 if model == "fcn" else 1, iterations=1)
    last = summaries[-1]
    benchmark.extra_info.update(x_realtime=round(last.x_realtime, 1),
                                **{f"{stage}_share": round(v, 3) for stage, v in last.shares.items()})
