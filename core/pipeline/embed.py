"""The embed stage: each model's embeddings in one content-addressed store per configuration
(``musicrep.store``), shared by its tasks; each task gets a view of it. Only clips the store
lacks are embedded, and every decision is said with its reasons (``decide``)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py

from musicrep.distributed import barrier, is_main, world
from musicrep.errors import MusicrepError
from musicrep.embed import EmbedSummary, embed_clips, write_view
from musicrep.hashing import state_hash
from musicrep.layers import OUT
from musicrep.model import Embedder
from musicrep.pipeline.context import Decision, RunContext, StageOutcome, Unloadable, log
from musicrep.pipeline.spec import ModelSpec
from musicrep.provenance import EmbedKey, algorithm_versions, component_fields, loaded_model, reasons
from musicrep.store import ContentStore, EmbeddingStore, StoreError, TaskView
from musicrep.store.layout import read_identity

#: bad files named in the log (all are listed in the view's 'skipped' attribute)
SHOWN_BAD_FILES = 20
#: changed audio files named in a reason before "..."
SHOWN_FILES = 3


def stored_layers(asked: list[str]) -> list[str]:
    """The layers a store holds: those asked for, and the embedding ("out", always stored) last."""
    return [*(layer for layer in asked if layer != OUT), OUT]


def embed_key(context: RunContext, model: ModelSpec, embedder: Embedder) -> EmbedKey:
    """What shapes ``model``'s embeddings: its components, weights, windowing, layers, dtype."""
    embed = context.spec.embed
    described = (loaded_model(model.load, model.weights) if model.load
                 else {"frontend": component_fields(model.frontend), "encoder": component_fields(model.encoder)})
    return EmbedKey(described, state_hash(embedder.state_dict()), embed.window, embed.hop, embed.pooling,
                    embed.windowing, tuple(stored_layers(model.layers)), embed.dtype,
                    algorithm_versions(frontend=embedder.frontend, encoder=embedder.encoder, embedder=embedder))


def stored_key(context: RunContext, model: ModelSpec) -> EmbedKey:
    """The key of the ``store`` of a model that cannot be loaded (``context.Unloadable``), read
    from the store itself: its weights cannot be hashed, so the store vouches for them. The
    settings the run asks for ([embed] window, hop, pooling, windowing, dtype; the layers) must
    be the store's; one line naming the fields that differ."""
    root = Path(model.store or "")
    found = read_identity(root)
    if found is None:
        raise MusicrepError(f"{root}: model '{model.name}' cannot be loaded and this is no musicrep store to take its "
                            "embeddings from")
    try:
        key = EmbedKey(**found)
    except TypeError:
        raise MusicrepError(f"{root}/store.json: not an embed key this version of musicrep reads") from None
    embed = context.spec.embed
    asked = EmbedKey(key.model, key.weights, embed.window, embed.hop, embed.pooling, embed.windowing,
                     tuple(stored_layers(model.layers)), embed.dtype, key.algorithms)
    differ = reasons(found, asked.fields(), EmbedKey.INPUTS)
    if differ:
        raise MusicrepError(f"{root}: model '{model.name}' cannot use this store, it holds embeddings of other "
                            f"settings ({'; '.join(differ)})")
    return key


def check_stored(context: RunContext, model: ModelSpec, reason: str) -> None:
    """A model served by its store alone needs every clip of every task in it: the clips it
    lacks are one line (the first few named, all counted), not a failure to load the model."""
    root = Path(model.store or "")
    if context.forced("embed"):
        raise MusicrepError(f"model '{model.name}' cannot be loaded ({reason}); --force embed cannot embed its clips "
                            "again")
    missing: dict[str, str] = {}  # content key -> the first item (its path) that needs it
    with ContentStore(root) as store:
        damaged = [f"{path.name} is {why}" for path, why in store.damage()]
        for task_name, task in context.tasks.items():
            keys = context.content_keys(task_name)
            known = store.known(keys) if keys else []
            for item, key, held in zip(task.items(), keys, known):
                if not held:
                    missing.setdefault(key, str(item.path or item.id))
    if missing or damaged:
        shown = ", ".join(list(missing.values())[:SHOWN_FILES]) + (", ..." if len(missing) > SHOWN_FILES else "")
        lacks = f"lacks {len(missing)} clip{'s' if len(missing) != 1 else ''} the tasks need ({shown})" if missing else ""
        raise MusicrepError(f"{root}: model '{model.name}' cannot be loaded ({reason}) and its store "
                            + "; ".join(filter(None, [lacks, *damaged])))


def store_root(context: RunContext, key: EmbedKey, model: ModelSpec | None = None) -> Path:
    """The model's store folder: its ``store`` (one ``musicrep embed`` made), else the run's own."""
    return Path(model.store) if model is not None and model.store else context.run.content_store(key.key)


def _previous_view(path: Path) -> tuple[dict[str, Any], dict[str, str]] | None:
    """The provenance and ``{item id: content key}`` of the view a earlier run wrote; None if
    there is none to read (then the reasons say so)."""
    try:
        with h5py.File(path, "r") as h5:
            provenance = json.loads(h5.attrs["provenance"])
            ids, keys = h5["ids"].asstr()[:], h5["keys"].asstr()[:]
            skipped = json.loads(h5.attrs["skipped"])
    except Exception:  # noqa: BLE001 - missing, older layout, damaged: no earlier decision to compare
        return None
    if not isinstance(provenance, dict) or len(ids) != len(keys):
        return None
    known = dict(zip(map(str, ids), map(str, keys)))
    for record in skipped if isinstance(skipped, list) else []:
        if isinstance(record, dict) and isinstance(record.get("id"), str):
            known.setdefault(record["id"], "")  # present before, key unknown (skipped as bad)
    return provenance, known


def _audio_reasons(before: dict[str, str], task: Any, keys: list[str]) -> list[str]:
    """How the task's audio differs from the earlier view: changed files named, added and removed counted."""
    now = {item.id: key for item, key in zip(task.items(), keys)}
    changed = [i for i, key in now.items() if i in before and before[i] and before[i] != key]
    added = [i for i in now if i not in before]
    removed = [i for i in before if i not in now]
    out = []
    if changed:
        shown = ", ".join(changed[:SHOWN_FILES]) + (", ..." if len(changed) > SHOWN_FILES else "")
        out.append(f"{len(changed)} audio file{'s' if len(changed) > 1 else ''} changed ({shown})")
    if added:
        out.append(f"{len(added)} item{'s' if len(added) > 1 else ''} added")
    if removed:
        out.append(f"{len(removed)} item{'s' if len(removed) > 1 else ''} removed")
    return out


def decide(context: RunContext, model: ModelSpec, key: EmbedKey, task_name: str) -> Decision:
    """Whether the embed stage must embed anything for ``model`` x ``task_name``, and why."""
    root, keys = store_root(context, key, model), context.content_keys(task_name)
    view = context.run.store(model.name, task_name)
    if context.forced("embed"):
        return Decision("embed", model.name, task_name, "run", ["--force embed"])
    missing, damaged = len(set(keys)), []  # type: int, list[str]
    found = read_identity(root)
    if found is not None and model.store and reasons(found, key.fields(), EmbedKey.INPUTS):
        raise MusicrepError(f"{root}: model '{model.name}' cannot use this store, it holds another configuration's "
                            f"embeddings ({'; '.join(reasons(found, key.fields(), EmbedKey.INPUTS))})")
    if found is not None:
        with ContentStore(root) as store:
            missing = int((~store.known(list(set(keys)))).sum())
            damaged = [f"{path.name} is {why}" for path, why in store.damage()]
    if not missing and not damaged:
        return Decision("embed", model.name, task_name, "cached")
    previous = _previous_view(view)
    if previous is None:
        why = ["not embedded yet"]
    else:
        why = reasons(previous[0], key.fields(), EmbedKey.INPUTS)
        why += _audio_reasons(previous[1], context.tasks[task_name], keys) if not why else []
    return Decision("embed", model.name, task_name, "run",
                    damaged + (why or [f"{missing} clips not in the store"]))


def planned_view(context: RunContext, key: EmbedKey, task_name: str, model: ModelSpec | None = None) -> TaskView:
    """The view a task will have over its model's store once embedded (its bad files as the
    store knows them so far)."""
    root, keys = store_root(context, key, model), context.content_keys(task_name)
    skipped: dict[str, dict[str, str]] = {}
    if read_identity(root) is not None:
        with ContentStore(root) as store:
            skipped = store.skipped
    return TaskView.of_task(context.tasks[task_name], keys, skipped)


def embed_task(context: RunContext, model: ModelSpec, embedder: Embedder, task_name: str,
               key: EmbedKey | None = None) -> dict[str, Any] | None:
    """Fill ``model``'s store with what ``task_name`` needs and write the task's view; the
    extraction summary, or None when nothing had to be embedded. ``key``: ``embed_key``'s."""
    run, task = context.run, context.tasks[task_name]
    key = key or embed_key(context, model, embedder)
    root, view = store_root(context, key, model), run.store(model.name, task_name)
    decision = decide(context, model, key, task_name)
    name = f"{model.name}/{task_name}"
    if is_main():
        log(decision.line(name))
    if any(" is damaged" in r for r in decision.reasons) and is_main():
        with ContentStore(root) as store:
            broken = [path for path, _ in store.damage()]
        for path in broken:  # its clips are embedded again below
            path.unlink(missing_ok=True)
    keys = context.content_keys(task_name)
    summary = None
    if decision.action == "run":
        embed = context.spec.embed
        rank, world_size = world()
        summary = embed_clips(embedder, task, task.items(), keys, root, key.fields(), force=context.forced("embed"),
                              batch_size=embed.batch_size, on_bad_audio=embed.on_bad_audio, device=context.device,
                              flush_every=embed.checkpoint_every, num_workers=embed.num_workers, dtype=embed.dtype,
                              shard=(rank, world_size), progress=is_main(), layers=stored_layers(model.layers),
                              compile=embed.compile, desc=f"embed {name}")
        if world_size > 1:  # every rank wrote its segment; the store reads them all
            barrier()
    if is_main():
        _update_view(task, keys, root, view)
    if summary is not None and is_main():
        log(f"embed {name}: {store_counts(view, summary)}, {summary.x_realtime:.0f}x realtime, "
            f"{summary.batch_size} windows a call; time shares: "
            + ", ".join(f"{stage} {share:.2f}" for stage, share in summary.shares.items()))
        with EmbeddingStore(view) as opened:  # every item by its own path: two bad files may share a key
            bad = opened.skipped if summary.bad_files else []
        if bad:  # by name: the user must be able to find and fix each one
            shown = "; ".join(f"{b['path']} ({b['reason']})" for b in bad[:SHOWN_BAD_FILES])
            more = f"; and {len(bad) - SHOWN_BAD_FILES} more" if len(bad) > SHOWN_BAD_FILES else ""
            log(f"embed {name}: skipped bad audio: {shown}{more} (all listed in the view's 'skipped' attribute)")
    return None if summary is None else summary.as_dict()


def _update_view(task: Any, keys: list[str], root: Path, view: Path) -> None:
    """(Re)write the task's view when it is not the task's over this store: labels, splits and
    keys always come from the task, never from what a file says."""
    with ContentStore(root) as store:
        wanted = TaskView.of_task(task, keys, store.skipped).digest
    try:
        with EmbeddingStore(view) as current:
            if current.digest == wanted and current.store_root.resolve() == root.resolve():
                return
    except StoreError:
        pass
    write_view(task, keys, root, view)


def store_counts(view: Path, summary: EmbedSummary) -> str:
    """The view's tracks and skipped files, and how many clips this call embedded (a resumed
    extraction embeds only the rest; clips another task shares are not embedded again)."""
    with EmbeddingStore(view) as opened:
        tracks, skipped = len(opened), len(opened.skipped)
    resumed = f", {summary.resumed_tracks} by an interrupted run" if summary.resumed_tracks else ""
    return f"{tracks} tracks ({summary.tracks} embedded now{resumed}), {skipped} skipped"


@dataclass(frozen=True)
class Embedded:
    """What the probe stage needs of one model x task: its view and its store's key."""

    view: Path
    key: EmbedKey


def run(context: RunContext, embedders: dict[str, Embedder | Unloadable]) -> StageOutcome:
    """Every task's view, ``{(model, task): Embedded}``, from the pretrain stage's ``{model: Embedder}``
    (a model that cannot be loaded, ``Unloadable``, is served by its store alone)."""
    stores: dict[tuple[str, str], Embedded] = {}
    made: dict[str, Any] = {}
    for model in context.spec.models.values():
        embedder = embedders[model.name]
        if isinstance(embedder, Unloadable):  # every clip from its store, or one line naming those it lacks
            key = stored_key(context, model)
            check_stored(context, model, embedder.reason)
        else:
            key = embed_key(context, model, embedder)
        for task_name in context.tasks:
            made[f"{model.name}/{task_name}"] = embed_task(context, model, embedder, task_name, key)
            stores[model.name, task_name] = Embedded(context.run.store(model.name, task_name), key)
    if is_main():
        context.content_index.save()
    summary = {"stores": {key: "cached" if s is None else s for key, s in made.items()},
               "cached": all(s is None for s in made.values())}
    return StageOutcome(stores, summary)
