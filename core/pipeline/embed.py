"""The embed stage: one HDF5 store per model x task (the extractor, ``musicrep.embed``, fills it),
keyed by its provenance: the embed config, the model's weights, the task's items."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from musicrep._version import __version__
from musicrep.distributed import barrier, is_main, world
from musicrep.embed import EmbedSummary, extract
from musicrep.hashing import state_hash
from musicrep.layers import OUT
from musicrep.model import Embedder
from musicrep.pipeline.context import RunContext, StageOutcome, log
from musicrep.pipeline.spec import ModelSpec
from musicrep.store import EmbeddingStore, join_shards

#: bad files named in the log (all are listed in the store's 'skipped' attribute)
SHOWN_BAD_FILES = 20


def stored_layers(asked: list[str]) -> list[str]:
    """The layers a store holds: those asked for, and the embedding ("out", always stored) last."""
    return [*(layer for layer in asked if layer != OUT), OUT]


def store_config(context: RunContext, model: ModelSpec, task_name: str) -> dict[str, Any]:
    """The configuration part of a store's provenance: known before any work is done."""
    embed = context.spec.embed
    return {**model.describe(), "window": embed.window, "hop": embed.hop, "pooling": embed.pooling,
            "windowing": embed.windowing, **({"dtype": embed.dtype} if embed.dtype != "float32" else {}),
            **({"layers": stored_layers(model.layers)} if model.layers != [OUT] else {}),
            "task": context.spec.tasks[task_name].describe()}


def provenance(context: RunContext, model: ModelSpec, embedder: Embedder, task_name: str) -> dict[str, Any]:
    """What a store holds: its config plus its inputs (the weights' hash, the task's items)."""
    config = store_config(context, model, task_name)
    return {**config, "model": state_hash(embedder.state_dict()),
            "task": {**config["task"], "items": context.tasks[task_name].fingerprint()}, "musicrep": __version__}


def embed_task(context: RunContext, model: ModelSpec, embedder: Embedder, task_name: str) -> dict[str, Any] | None:
    """Fill the store of ``model`` x ``task_name``; the extraction summary, or None when cached."""
    run, task = context.run, context.tasks[task_name]
    store = run.store(model.name, task_name)
    made_from = provenance(context, model, embedder, task_name)
    status = run.store_status(model.name, task_name, made_from)
    if status not in ("missing", "complete"):
        log(f"embed {model.name}/{task_name}: the existing store is {status}; embedding again")
    if context.forced("embed") and store.exists():
        store.unlink()
    elif status == "complete":
        log(f"embed {model.name}/{task_name}: cached")
        return None
    rank, world_size = world()
    target = store if world_size == 1 else run.store_shard(model.name, task_name, rank, world_size)
    embed = context.spec.embed
    summary = extract(embedder, task, target, made_from, batch_size=embed.batch_size,
                      on_bad_audio=embed.on_bad_audio, device=context.device, flush_every=embed.checkpoint_every,
                      num_workers=embed.num_workers, dtype=embed.dtype, shard=(rank, world_size), progress=is_main(),
                      layers=stored_layers(model.layers), compile=embed.compile)
    if world_size > 1:  # every rank wrote its shard; rank 0 joins them into one store
        barrier()
        if is_main():
            join_shards([run.store_shard(model.name, task_name, r, world_size) for r in range(world_size)], store)
    if is_main():
        log(f"embed {model.name}/{task_name}: {store_counts(store, summary)}, {summary.x_realtime:.0f}x realtime, "
            f"{summary.batch_size} windows a call; time shares: " + ", ".join(f"{stage} {share:.2f}" for stage, share in summary.shares.items()))
    if summary.bad_files:  # by name: the user must be able to find and fix each one
        shown = "; ".join(f"{b['path']} ({b['reason']})" for b in summary.bad_files[:SHOWN_BAD_FILES])
        more = (f"; and {len(summary.bad_files) - SHOWN_BAD_FILES} more"
                if len(summary.bad_files) > SHOWN_BAD_FILES else "")
        log(f"embed {model.name}/{task_name}: skipped bad audio: {shown}{more} "
            f"(all listed in the store's 'skipped' attribute)")
    return summary.as_dict()


def store_counts(store: Path, summary: EmbedSummary) -> str:
    """The whole store's tracks and skipped files, and how many of them this call embedded: a
    resumed extraction embeds only the rest, but the store holds every track."""
    with EmbeddingStore(store) as opened:
        tracks, skipped = len(opened), len(opened.skipped)
    now = (f" ({summary.tracks} embedded now, {summary.resumed_tracks} by an interrupted run)"
           if summary.resumed_tracks else "")
    return f"{tracks} tracks{now}, {skipped} skipped"


def run(context: RunContext, embedders: dict[str, Embedder]) -> StageOutcome:
    """Every store, ``{(model, task): path}``, from the pretrain stage's ``{model: Embedder}``."""
    stores: dict[tuple[str, str], Path] = {}
    made: dict[str, Any] = {}
    for model in context.spec.models.values():
        for task_name in context.tasks:
            made[f"{model.name}/{task_name}"] = embed_task(context, model, embedders[model.name], task_name)
            stores[model.name, task_name] = context.run.store(model.name, task_name)
    summary = {"stores": {key: "cached" if s is None else s for key, s in made.items()},
               "cached": all(s is None for s in made.values())}
    return StageOutcome(stores, summary)
