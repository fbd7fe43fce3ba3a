"""The pretrain stage: build every model; pre-train those with a ``pretrain`` table (the trainer,
``musicrep.train``, does the training), or load the result of an identical earlier run."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from musicrep import atomic
from musicrep.errors import MusicrepError
from musicrep.model import Embedder
from musicrep.objective import TrainingData
from musicrep.pipeline.context import Decision, RunContext, StageOutcome, Unloadable, build_model, log, ready_model
from musicrep.pipeline.spec import ModelSpec
from musicrep.tasks import encode_target
from musicrep.checkpoint import save_checkpoint
from musicrep.provenance import pretrain_key, reasons
from musicrep.train import Source, TrainSettings, load_checkpoint, train

from musicrep.catalog import AUDIO_SUFFIXES, walk_audio


@dataclass(frozen=True)
class FileItem:
    id: str
    path: str
    labels: tuple = ()
    split: str = "train"


class AudioFolder:
    """Unlabelled audio files under a folder (recursively), for contrastive pre-training.

    Walked by ``musicrep.catalog.walk_audio``: bounded, no link cycles, no ``/proc``, and a
    root of ``/`` refused in one line before any work."""

    kind = None
    label_names: list[str] = []

    def __init__(self, root: Path) -> None:
        self.root = root
        files = list(walk_audio(root))
        if not files:
            raise MusicrepError(f"{root}: no audio files ({', '.join(AUDIO_SUFFIXES)}) found")
        self._items = [FileItem(str(Path(path).relative_to(root)), path) for path in files]

    def items(self, split: str | None = None) -> list[FileItem]:
        return list(self._items)

    def audio(self, item: FileItem, sample_rate: int) -> np.ndarray:
        from musicrep.audio import load

        return load(item.path, sample_rate)

    def crops(self, item: FileItem, sample_rate: int, seconds: float, count: int,
              rng: np.random.Generator) -> np.ndarray | None:
        """Pre-training's crops, each read by seeking (see ``Task.crops``)."""
        from musicrep.audio import seek_crops

        return seek_crops(item.path, sample_rate, seconds, count, rng)


def gather_sources(context: RunContext, model: ModelSpec) -> tuple[list[Source], TrainingData]:
    """The clips to pre-train on: each named task's train split, each named folder's files."""
    tasks = context.tasks
    sources: list[Source] = []
    labelled = [name for name in model.pretrain.data if name in tasks]
    data = TrainingData(None, 0)
    if model.objective and getattr(context.registry.info("objective", model.objective.name).factory,
                                   "needs_labels", False):
        if len(labelled) != 1 or len(model.pretrain.data) != 1:
            raise MusicrepError(f"model '{model.name}': supervised pre-training takes exactly one task in "
                                f"pretrain.data, got {model.pretrain.data}")
        task = tasks[labelled[0]]
        data = TrainingData(task.kind, len(task.label_names))  # classes, labels, or regression targets
    for name in model.pretrain.data:
        source = tasks[name] if name in tasks else AudioFolder(context.spec.path.parent / name)
        for item in source.items("train") if name in tasks else source.items():
            target = None if data.kind is None else encode_target(data.kind, list(source.label_names), item.labels)
            sources.append(Source(source, item, target))
    return sources, data


def pretrain_description(context: RunContext, model: ModelSpec) -> dict[str, Any]:
    """Everything that determines a pre-trained model; its hash is the stage's cache key."""
    spec = context.spec
    return {
        **model.describe(),
        "objective": model.objective.describe(), "augmentations": [a.describe() for a in model.augmentations],
        "pretrain": asdict(model.pretrain), "data": {n: spec.tasks[n].describe() if n in spec.tasks else n
                                                     for n in model.pretrain.data},
        "seed": model.seed,
    }


def cached_weights(context: RunContext, model: ModelSpec) -> dict[str, torch.Tensor] | None:
    """The weights of an identical earlier pre-training of ``model``, if there is one."""
    if context.forced("pretrain"):
        return None
    state = load_checkpoint(context.run.model(model.name).final)
    if state is None or state.get("key") != pretrain_key(pretrain_description(context, model)):
        return None
    return state["embedder"]


def decide(context: RunContext, model: ModelSpec, cached: dict[str, torch.Tensor] | None) -> Decision:
    """Whether ``model`` must be pre-trained, and why; ``cached``: ``cached_weights``'."""
    if cached is not None:
        return Decision("pretrain", model.name, None, "cached")
    if context.forced("pretrain"):
        return Decision("pretrain", model.name, None, "run", ["--force pretrain"])
    stored = context.run.pretrain_status(model.name)
    before = stored.get("description") if isinstance(stored, dict) else None
    why = reasons(before, pretrain_description(context, model)) if isinstance(before, dict) else ["not made yet"]
    return Decision("pretrain", model.name, None, "run", why or ["its checkpoint is missing or unreadable"])


def pretrain_model(context: RunContext, model: ModelSpec, embedder: Embedder) -> dict[str, Any] | None:
    """Pre-train ``embedder`` in place and return the trainer's summary, or load the cached result
    of an identical earlier run and return None."""
    folder = context.run.model(model.name)
    fields = {k: v for k, v in asdict(model.pretrain).items() if k != "data"}
    settings = TrainSettings(**fields, seed=model.seed, on_bad_audio=context.spec.embed.on_bad_audio)
    description = pretrain_description(context, model)
    key = pretrain_key(description)
    cached = cached_weights(context, model)
    if cached is not None:
        embedder.load_state_dict(cached)
        log(f"pretrain {model.name}: cached")
        return None
    if context.forced("pretrain") and folder.last.exists():
        folder.last.unlink()
    sources, data = gather_sources(context, model)
    objective = model.objective.create(context.registry)
    augmentations = [a.create(context.registry) for a in model.augmentations]
    summary = train(embedder, objective, augmentations, sources, data, settings, folder.path, device=context.device,
                    key=key, label=f"pretrain {model.name}",
                    notify=lambda hook, **kw: context.registry.notify(hook, run_dir=str(folder.path), **kw))
    save_checkpoint({"key": key, "embedder": embedder.state_dict(), "description": description,
                     "summary": summary}, folder.final)
    atomic.write_json(folder.record, {"key": key, "description": description, "summary": summary})
    log(f"pretrain {model.name}: {summary['steps']} steps, final loss {summary['final_loss']:.4f}, "
        f"{summary['clips_per_s']:.1f} clips/s")
    return summary


def run(context: RunContext, inputs: None = None) -> StageOutcome:
    """Every model, ready to embed: ``{model name: Embedder}`` (``Unloadable`` for a model
    served by its store alone)."""
    embedders: dict[str, Embedder | Unloadable] = {}
    trained: dict[str, Any] = {}
    for model in context.spec.models.values():
        if model.pretrain is None:
            embedders[model.name] = ready_model(context, model)
        else:
            embedders[model.name] = embedder = build_model(context, model)
            trained[model.name] = pretrain_model(context, model, embedder)
    summary = {"models": {name: "cached" if s is None else s for name, s in trained.items()},
               "cached": all(s is None for s in trained.values())}
    return StageOutcome(embedders, summary)
