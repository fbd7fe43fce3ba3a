"""The pretrain stage of a pipeline: gather the data, train (or resume), cache the weights."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from musicrep import atomic
from musicrep.embed import encode_target
from musicrep.errors import MusicrepError
from musicrep.model import Embedder
from musicrep.objective import TrainingData
from musicrep.train import Source, TrainSettings, load_checkpoint, save_checkpoint, train, training_key

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


@dataclass(frozen=True)
class FileItem:
    id: str
    path: str
    labels: tuple = ()
    split: str = "train"


class AudioFolder:
    """Unlabelled audio files under a folder (recursively), for contrastive pre-training."""

    kind = None
    label_names: list[str] = []

    def __init__(self, root: Path) -> None:
        self.root = root
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise MusicrepError(f"{root}: no audio files ({', '.join(AUDIO_SUFFIXES)}) found")
        self._items = [FileItem(str(p.relative_to(root)), str(p)) for p in files]

    def items(self, split: str | None = None) -> list[FileItem]:
        return list(self._items)

    def audio(self, item: FileItem, sample_rate: int) -> np.ndarray:
        from musicrep.audio import load

        return load(item.path, sample_rate)


def gather_sources(run: Any, model: Any, tasks: dict[str, Any]) -> tuple[list[Source], TrainingData]:
    """The clips to pre-train on: each named task's train split, each named folder's files."""
    sources: list[Source] = []
    labelled = [name for name in model.pretrain.data if name in tasks]
    data = TrainingData(None, 0)
    if model.objective and getattr(run.registry.info("objective", model.objective.name).factory,
                                   "needs_labels", False):
        if len(labelled) != 1 or len(model.pretrain.data) != 1:
            raise MusicrepError(f"model '{model.name}': supervised pre-training takes exactly one task in "
                                f"pretrain.data, got {model.pretrain.data}")
        task = tasks[labelled[0]]
        data = TrainingData(task.kind, len(task.label_names))  # classes, labels, or regression targets
    for name in model.pretrain.data:
        source = tasks[name] if name in tasks else AudioFolder(run.spec.path.parent / name)
        for item in source.items("train") if name in tasks else source.items():
            target = None if data.kind is None else encode_target(data.kind, list(source.label_names), item.labels)
            sources.append(Source(source, item, target))
    return sources, data


def pretrain_description(run: Any, model: Any) -> dict[str, Any]:
    """Everything that determines a pre-trained model; its hash is the stage's cache key."""
    return {
        **model.describe(),
        "objective": model.objective.describe(), "augmentations": [a.describe() for a in model.augmentations],
        "pretrain": asdict(model.pretrain), "data": {n: run.spec.tasks[n].describe() if n in run.spec.tasks else n
                                                     for n in model.pretrain.data},
        "seed": run.spec.run.seed,
    }


def cached_weights(run: Any, model: Any) -> dict[str, torch.Tensor] | None:
    """The weights of an identical earlier pre-training of ``model``, if there is one."""
    if "pretrain" in run.force:
        return None
    state = load_checkpoint(run.run_dir / "models" / model.name / "final.pt")
    if state is None or state.get("key") != training_key(pretrain_description(run, model)):
        return None
    return state["embedder"]


def pretrain_stage(run: Any, model: Any, embedder: Embedder, tasks: dict[str, Any]) -> None:
    """Pre-train ``embedder`` in place, or load the cached result of an identical earlier run."""
    out_dir = run.run_dir / "models" / model.name
    fields = {k: v for k, v in asdict(model.pretrain).items() if k != "data"}
    settings = TrainSettings(**fields, seed=run.spec.run.seed)
    description = pretrain_description(run, model)
    key = training_key(description)
    final = out_dir / "final.pt"
    cached = cached_weights(run, model)
    if cached is not None:
        embedder.load_state_dict(cached)
        run.log(f"pretrain {model.name}: cached")
        return
    if "pretrain" in run.force and (out_dir / "last.pt").exists():
        (out_dir / "last.pt").unlink()
    sources, data = gather_sources(run, model, tasks)
    objective = model.objective.create(run.registry)
    augmentations = [a.create(run.registry) for a in model.augmentations]
    summary = train(embedder, objective, augmentations, sources, data, settings, out_dir, device=run.device,
                    key=key, notify=lambda hook, **kw: run.registry.notify(hook, run_dir=str(out_dir), **kw))
    save_checkpoint({"key": key, "embedder": embedder.state_dict(), "description": description,
                     "summary": summary}, final)
    atomic.write_json(out_dir / "pretrain.json", {"key": key, "description": description, "summary": summary})
    run.log(f"pretrain {model.name}: {summary['steps']} steps, final loss {summary['final_loss']:.4f}, "
            f"{summary['clips_per_s']:.1f} clips/s")
