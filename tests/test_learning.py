"""Pre-training learns: a probe on the trained encoder beats the same encoder at initialisation.

Generated audio (the synth pitch task, and chords of synth notes for the multi-label path), a
small CNN, a short run: a minute or two on a CPU.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import musicrep
from musicrep.embed import extract
from musicrep.model import Embedder
from musicrep.objective import TrainingData
from musicrep.plugins.tasks.synth import FAMILIES, midi_to_hz, render_note
from musicrep.probing import probe_store
from musicrep.keys import TONICS
from musicrep.tasks import Item, Task, encode_target
from musicrep.train import Source, TrainSettings, train

SEED = 1


def make_model() -> Embedder:
    torch.manual_seed(SEED)
    return Embedder(musicrep.get_component("frontend", "mel", n_mels=48),
                    musicrep.get_component("encoder", "fcn", channels=[8, 16, 32, 64], dim=64), window=1.0, hop=0.5)


def probe_score(embedder: Embedder, task, path: Path, metric: str = "accuracy") -> float:
    extract(embedder, task, path, {"store": path.name}, progress=False)
    result = probe_store(path, musicrep.get_component("probe", "linear"), probe_name="linear")
    return result["metrics"]["test"][metric]


def pretrain(embedder: Embedder, task, objective: str, steps: int, path: Path) -> None:
    supervised = objective == "supervised"
    data = TrainingData(task.kind, len(task.label_names)) if supervised else TrainingData(None, 0)
    sources = [Source(task, item, encode_target(task.kind, task.label_names, item.labels) if supervised else None)
               for item in task.items("train")]
    augmentations = [] if supervised else [musicrep.get_component("augmentation", n) for n in ("gain", "noise")]
    settings = TrainSettings(steps=steps, batch_size=32, lr=2e-3, weight_decay=0.0, warmup_steps=10, grad_clip=1.0,
                             clip_seconds=1.0, checkpoint_every=1000, num_workers=0, precision="fp32", seed=SEED)
    summary = train(embedder, musicrep.get_component("objective", objective), augmentations, sources, data,
                    settings, path, device=torch.device("cpu"), key=objective, progress=False)
    assert summary["steps"] == steps


@pytest.mark.slow
@pytest.mark.parametrize("objective, steps", [("simclr", 60), ("supervised", 40)])
def test_pretraining_beats_random_initialisation(tmp_path: Path, objective: str, steps: int) -> None:
    task = musicrep.get_component("task", "synth", label="pitch", n_train=96, n_valid=32, n_test=64, seconds=2.0,
                                  seed=SEED)
    before = probe_score(make_model(), task, tmp_path / "random.h5")
    embedder = make_model()
    pretrain(embedder, task, objective, steps, tmp_path / "train")
    after = probe_score(embedder, task, tmp_path / "trained.h5")
    assert after > before + 0.05, (before, after)


class ChordTask(Task):
    """Multi-label: which pitch classes sound in a chord of 2-3 synth notes (one timbre, any octave).

    The paper's supervised setting is multi-label (expert tags, sigmoid + binary cross-entropy);
    this is the smallest task that takes that path. Deterministic by ``seed``.
    """

    kind = "multilabel"
    label_names = list(TONICS)
    metrics = ["roc_auc"]
    sample_rate = 16000

    def __init__(self, counts: dict[str, int], seconds: float, seed: int) -> None:
        super().__init__()
        self.counts, self.seconds, self.seed = counts, seconds, seed

    def _rng(self, item_id: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(item_id.encode())])

    def load_items(self) -> list[Item]:
        items = []
        for split, count in self.counts.items():
            for i in range(count):
                item_id = f"{split}{i:04d}"
                classes = self._rng(item_id).choice(12, size=2 + i % 2, replace=False)
                items.append(Item(id=item_id, path=None, labels=[TONICS[c] for c in sorted(classes)], split=split))
        return items

    def audio(self, item: Item, sample_rate: int) -> np.ndarray:
        rng = self._rng(item.id + "audio")
        n = int(self.seconds * sample_rate)
        family = FAMILIES[rng.integers(len(FAMILIES) - 1)]   # no bells: inharmonic partials
        wave = sum(render_note(midi_to_hz(12 * int(rng.integers(4, 6)) + TONICS.index(label)), n, sample_rate,
                               family, rng) for label in item.labels)
        wave = wave / np.abs(wave).max() * rng.uniform(0.3, 1.0) + 0.01 * rng.standard_normal(n)
        return wave.astype(np.float32)


@pytest.mark.slow
def test_multilabel_supervised_pretraining_beats_random_initialisation(tmp_path: Path) -> None:
    task = ChordTask({"train": 128, "valid": 32, "test": 64}, seconds=1.5, seed=SEED)
    before = probe_score(make_model(), task, tmp_path / "random.h5", "roc_auc")
    embedder = make_model()
    pretrain(embedder, task, "supervised", 60, tmp_path / "train")
    after = probe_score(embedder, task, tmp_path / "trained.h5", "roc_auc")
    assert after > before + 0.03, (before, after)
