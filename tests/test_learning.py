"""Pre-training learns: a probe on the trained encoder beats the same encoder at initialisation.

Generated audio (the synth pitch task), a small CNN, a short run: a minute or two on a CPU.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import musicrep
from musicrep.embed import extract
from musicrep.model import Embedder
from musicrep.objective import TrainingData
from musicrep.probing import probe_store
from musicrep.tasks import encode_target
from musicrep.train import Source, TrainSettings, train

SEED = 1


def make_model() -> Embedder:
    torch.manual_seed(SEED)
    return Embedder(musicrep.get_component("frontend", "mel", n_mels=48),
                    musicrep.get_component("encoder", "fcn", channels=[8, 16, 32, 64], dim=64), window=1.0, hop=0.5)


def probe_accuracy(embedder: Embedder, task, path: Path) -> float:
    extract(embedder, task, path, {"store": path.name}, progress=False)
    result = probe_store(path, musicrep.get_component("probe", "linear"), probe_name="linear")
    return result["metrics"]["test"]["accuracy"]


@pytest.mark.slow
@pytest.mark.parametrize("objective, steps", [("simclr", 60), ("supervised", 40)])
def test_pretraining_beats_random_initialisation(tmp_path: Path, objective: str, steps: int) -> None:
    task = musicrep.get_component("task", "synth", label="pitch", n_train=96, n_valid=32, n_test=64, seconds=2.0,
                                  seed=SEED)
    before = probe_accuracy(make_model(), task, tmp_path / "random.h5")
    embedder = make_model()
    supervised = objective == "supervised"
    data = TrainingData("multiclass", len(task.label_names)) if supervised else TrainingData(None, 0)
    sources = [Source(task, item, encode_target(task.kind, task.label_names, item.labels) if supervised else None)
               for item in task.items("train")]
    augmentations = [] if supervised else [musicrep.get_component("augmentation", n) for n in ("gain", "noise")]
    settings = TrainSettings(steps=steps, batch_size=32, lr=2e-3, weight_decay=0.0, warmup_steps=10, grad_clip=1.0,
                             clip_seconds=1.0, checkpoint_every=1000, num_workers=0, precision="fp32", seed=SEED)
    summary = train(embedder, musicrep.get_component("objective", objective), augmentations, sources, data,
                    settings, tmp_path / "train", device=torch.device("cpu"), key=objective, progress=False)
    assert summary["steps"] == steps
    after = probe_accuracy(embedder, task, tmp_path / "trained.h5")
    assert after > before + 0.05, (before, after)
