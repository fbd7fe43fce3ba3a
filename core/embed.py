"""The extractor: every clip a store lacks through front end + encoder into the store, by
content key (``musicrep.store``); a task's view over the store is written after (the embed
stage, ``musicrep.pipeline.embed``, decides what to extract).

Tracks are decoded and resampled by a pool of data-loader workers that stays ahead of the
encoder through a bounded queue (``prefetch`` tracks per worker) and hands tracks over in the
task's order whichever worker finishes first, so the part files stay a prefix of the task and
resume as before. On CUDA the waves arrive in pinned memory and are copied without blocking.
The windows of several tracks are batched through the encoder. Finished tracks go to the
store's atomic part files, so a killed extraction resumes where it stopped.
"""
from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from musicrep.accel import WindowEncoder, autotune_fixed_shapes, to_device
from musicrep.audio import BadAudioError, BadAudioPolicy
from musicrep.interrupts import stop_if_interrupted
from musicrep.layers import OUT
from musicrep.loader_workers import init_worker
from musicrep.model import Embedder
from musicrep.progress import progress_bar
from musicrep.content import LOOKUP_BATCH, ContentIndex, segment_key
from musicrep.store import ContentStore, StoreWriter, TaskView, TrackEmbedding, shards
from musicrep.store.layout import segments_folder

log = logging.getLogger("musicrep.embed")
PREFETCH = 4  # tracks queued per decode worker: enough to cover a slow file, bounded in memory


def default_workers() -> int:
    """Decode workers when ``[embed] num_workers`` is not set: one per core this process may use
    (the main process mostly waits on the encoder), at most 16."""
    return max(1, min(16, len(os.sched_getaffinity(0))))


@dataclass
class EmbedSummary:
    tracks: int
    windows: int
    skipped: int
    audio_seconds: float
    wall_seconds: float
    decode_seconds: float   # summed over the decode workers (CPU time, may exceed the wall time)
    write_seconds: float
    resumed_tracks: int
    wait_seconds: float = 0.0      # the main process waiting for decoded audio
    frontend_seconds: float = 0.0
    encoder_seconds: float = 0.0
    assembly_bytes: int = 0        # resident memory the store's assembly added (flat in the tracks)
    batch_size: int = 0            # windows per encoder call at the end (sized on a GPU; 0: none ran)
    #: the files skipped as bad audio in this call, {"path", "reason"} each (``skipped`` counts them)
    bad_files: list[dict[str, str]] = field(default_factory=list)

    @property
    def x_realtime(self) -> float:
        return self.audio_seconds / max(self.wall_seconds, 1e-9)

    @property
    def shares(self) -> dict[str, float]:
        """Where the wall time went: waiting for decoding (and resampling), the front end, the
        encoder (with the copy back) and the store; the rest is bookkeeping."""
        wall = max(self.wall_seconds, 1e-9)
        return {"decode": self.wait_seconds / wall, "frontend": self.frontend_seconds / wall,
                "encoder": self.encoder_seconds / wall, "write": self.write_seconds / wall}

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "x_realtime": self.x_realtime, "shares": self.shares}


class _TrackAudio(Dataset):
    """Decodes tracks in loader workers; a bad file comes back as its error, not a crash."""

    def __init__(self, task: Any, items: list[Any], sample_rate: int) -> None:
        self.task, self.items, self.sample_rate = task, items, sample_rate

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, BadAudioError | None, float]:
        start = time.perf_counter()
        item = self.items[index]
        try:
            wave = np.ascontiguousarray(self.task.audio(item, self.sample_rate), dtype=np.float32)
            error = None
            if wave.ndim != 1 or wave.size == 0:
                wave, error = None, BadAudioError(item.path or item.id, f"decoded to shape {wave.shape}, "
                                                                       "expected [T] with T > 0")
        except BadAudioError as exc:  # sent back to the main process, whose policy handles it
            wave, error = None, exc
        # a tensor crosses from a worker through shared memory, not a pickle
        return index, None if wave is None else torch.from_numpy(wave), error, time.perf_counter() - start


def default_store(view: str | Path) -> Path:
    """The store folder ``extract`` fills when it is given none: beside the view, ``<view>.store``."""
    view = Path(view)
    return view.with_name(view.name + ".store")


def content_keys(task: Any, index: ContentIndex | None = None) -> list[str]:
    """Every item's content key (``Task.content_key``), in the task's order. Items keyed by their
    file's bytes (the default ``content_key`` and ``audio``) are digested in batches
    (``file_keys``); a file that cannot be read gets a key of its path: the extractor then names
    it as bad audio."""
    from musicrep.tasks import Task

    index = ContentIndex() if index is None else index  # an empty index is falsy (__len__)
    items = task.items()
    by_file = type(task).content_key is Task.content_key and type(task).audio is Task.audio
    files = [i for i, item in enumerate(items) if by_file and item.path is not None]
    keys: list[str | None] = [None] * len(items)
    for i, digest in zip(files, file_keys(index, [items[i].path for i in files])):
        keys[i] = digest if digest.startswith("unreadable-") else segment_key(digest, items[i].start, items[i].end)
    for i, item in enumerate(items):
        if keys[i] is None:
            try:
                keys[i] = task.content_key(item, index)
            except OSError:
                keys[i] = unreadable_key(item.path)
    return keys  # type: ignore[return-value]


def file_keys(index: ContentIndex, paths: Sequence[str | Path]) -> list[str]:
    """The digest of each file (``ContentIndex.digests``, ``LOOKUP_BATCH`` at a time: one query
    and no read for a file whose stat is unchanged), or ``unreadable_key`` of one that cannot be
    read (a batch holding such a file is redone one file at a time)."""
    out: list[str] = []
    for start in range(0, len(paths), LOOKUP_BATCH):
        chunk = paths[start:start + LOOKUP_BATCH]
        try:
            out.extend(index.digests(chunk))
        except OSError:
            for path in chunk:
                try:
                    out.append(index.digest(path))
                except OSError:
                    out.append(unreadable_key(path))
    return out


def unreadable_key(path: object) -> str:
    """The key of a file that could not be read (its path's hash): embedding it names it as bad."""
    return "unreadable-" + hashlib.sha256(str(path).encode()).hexdigest()


def extract(embedder: Embedder, task: Any, store_path: str | Path, provenance: dict[str, Any], *,
            store: str | Path | None = None, keys: Sequence[str] | None = None, force: bool = False,
            batch_size: int | None = None, on_bad_audio: str = "skip", num_workers: int | None = None,
            device: torch.device | str = "cpu", progress: bool = True, flush_every: int = 128,
            shard: tuple[int, int] = (0, 1), dtype: str = "float32", layers: Sequence[str] = (OUT,),
            compile: bool = False, desc: str | None = None) -> EmbedSummary:
    """Embed every clip of ``task`` that the store lacks, then write the task's view at
    ``store_path`` (``musicrep.store.view``; read it with ``EmbeddingStore(store_path)``).

    ``store``: the store folder of ``provenance`` (default ``default_store(store_path)``);
    ``keys``: the items' content keys (default: computed, ``content_keys``); ``force``: embed
    every clip again (a new segment, which wins over the old rows).
    ``num_workers``: decode processes (None: ``default_workers()``; 0 decodes in this process).
    ``batch_size``: windows per encoder call (None: sized for the device, ``accel.WindowEncoder``);
    ``compile``: the encoder through ``torch.compile``.
    ``dtype``: of the stored window embeddings ("float32" or "float16"; pooled ones stay float32).
    ``shard=(rank, world_size)`` embeds every world_size-th missing clip: under torchrun each
    rank writes its own segment, and the view is written by ``write_view`` once all have.
    ``layers``: the encoder's layers to store (``musicrep.layers``), all from one forward pass;
    the embedding ("out") is always stored.
    """
    root = Path(store) if store is not None else default_store(store_path)
    keys = list(keys) if keys is not None else content_keys(task)
    name = desc or f"embed {Path(store_path).parent.name}/{Path(store_path).stem}"
    summary = embed_clips(embedder, task, task.items(), keys, root, provenance, force=force, batch_size=batch_size,
                          on_bad_audio=on_bad_audio, num_workers=num_workers, device=device, progress=progress,
                          flush_every=flush_every, shard=shard, dtype=dtype, layers=layers, compile=compile, desc=name)
    if shard[1] == 1:
        write_view(task, keys, root, store_path)
    return summary


def write_view(task: Any, keys: Sequence[str], store: Path, view: str | Path) -> TaskView:
    """Write ``task``'s view over the store folder ``store`` at ``view``; the view."""
    with ContentStore(store) as opened:
        made = TaskView.of_task(task, keys, opened.skipped)
        opened.locate(made.keys)  # every item is stored or skipped: a view never points at nothing
        made.write(Path(view), store, opened.provenance)
    return made


def embed_clips(embedder: Embedder, source: Any, items: Sequence[Any], keys: Sequence[str], store: Path,
                provenance: dict[str, Any], *, force: bool = False, batch_size: int | None = None,
                on_bad_audio: str = "skip", num_workers: int | None = None, device: torch.device | str = "cpu",
                progress: bool = True, flush_every: int = 128, shard: tuple[int, int] = (0, 1),
                dtype: str = "float32", layers: Sequence[str] = (OUT,), compile: bool = False,
                desc: str = "embed") -> EmbedSummary:
    """Embed the clips of ``items`` (decoded by ``source.audio(item, rate)``), filed under
    ``keys``, that the store folder ``store`` does not hold yet (all of them: ``force``);
    each key once, however many items share it. Resumes a killed run's journal."""
    device = torch.device(device)
    embedder = to_device(embedder, device).eval()
    intermediate = tuple(layer for layer in layers if layer != OUT)
    encode = WindowEncoder(embedder.encoder, device, batch_size, compile=compile, layers=(*intermediate, OUT))
    policy = BadAudioPolicy(on_bad_audio)
    workers = default_workers() if num_workers is None else num_workers
    writer = StoreWriter(store, provenance, pooling=embedder.pooling, flush_every=flush_every, dtype=dtype,
                         layers=intermediate, shard=shard)
    keys = np.asarray(list(keys), dtype=object)
    _, firsts = np.unique(keys, return_index=True) if len(keys) else (None, np.zeros(0, np.int64))
    firsts = np.sort(firsts)  # each key's first item, in the items' order
    if not force and any(segments_folder(store).glob("seg-*.h5")):
        with ContentStore(store) as held:
            firsts = firsts[~held.known(keys[firsts])]
    firsts = np.asarray(shards.shard(firsts, *shard), dtype=np.int64)
    order = [str(k) for k in keys[firsts]]
    summary = EmbedSummary(0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0)
    started = time.perf_counter()
    restore_autotune = autotune_fixed_shapes(device)
    try:
        done = writer.done_ids
        summary.resumed_tracks = sum(key in done for key in order)
        todo = [i for i, key in enumerate(order) if key not in done]
        if progress and summary.resumed_tracks:  # an interrupted extraction, resumed: say so
            print(f"{desc}: {summary.resumed_tracks} of {len(order)} tracks already embedded, {len(todo)} to go",
                  file=sys.stderr, flush=True)
        _embed_items(embedder, source, [items[firsts[i]] for i in todo], [order[i] for i in todo], writer, summary,
                     policy=policy,
                     encode=encode, workers=workers, device=device, progress=progress, desc=desc)
        missing = writer.missing(order)
        if missing:  # a part deleted or damaged since this run read the journal
            log.warning("%s: %d finished clips are in no part file any more; embedding them again",
                        store, len(missing))
            position = {key: i for i, key in enumerate(order) if key in set(missing)}
            _embed_items(embedder, source, [items[firsts[position[key]]] for key in missing], missing, writer, summary,
                         policy=policy, encode=encode, workers=workers, device=device, progress=progress,
                         desc="embed again")
        t0 = time.perf_counter()
        writer.finish(order=order)
        summary.write_seconds += time.perf_counter() - t0
        summary.assembly_bytes = writer.assembly_memory
    finally:
        writer.close()
        restore_autotune()
    summary.wall_seconds = time.perf_counter() - started
    summary.batch_size = encode.batch_size or 0
    return summary


def _embed_items(embedder: Embedder, task: Any, items: list[Any], keys: list[str], writer: StoreWriter,
                 summary: EmbedSummary, *,
                 policy: BadAudioPolicy, encode: WindowEncoder, workers: int, device: torch.device, progress: bool,
                 desc: str) -> None:
    """Decode, window, encode and hand ``items`` to the writer in their order; every finished
    track reaches a part file, also when interrupted."""
    loader = DataLoader(_TrackAudio(task, items, embedder.sample_rate), batch_size=None, shuffle=False,
                        num_workers=workers, collate_fn=_as_is, pin_memory=device.type == "cuda",
                        prefetch_factor=PREFETCH if workers else None, worker_init_fn=init_worker)
    pending: list[tuple[str, torch.Tensor, torch.Tensor]] = []
    pending_windows = 0
    started = time.perf_counter()
    position = {key: i for i, key in enumerate(keys)}  # a pending track's item, for naming it

    def bad_track(key: str, item: Any, error: BadAudioError) -> None:
        """A track that gives no embedding: fails the run, or is skipped, named and recorded (a
        rerun does not try it again)."""
        policy.handle(error)  # raises under on_bad_audio = "fail"
        writer.skip(key, str(item.path or item.id), error.reason)
        summary.skipped += 1
        summary.bad_files.append({"path": error.path, "reason": error.reason})

    def drain() -> None:
        nonlocal pending, pending_windows
        if not pending:
            return
        t0 = time.perf_counter()
        windows = torch.cat([w for _, w, _ in pending])
        sizes = [len(w) for _, w, _ in pending]
        per_track = {layer: out.float().cpu().split(sizes) for layer, out in encode(windows).items()}
        t1 = time.perf_counter()
        finite = [all(bool(per_track[layer][k].isfinite().all()) for layer in per_track) for k in range(len(pending))]
        writer.add_many([TrackEmbedding(key, per_track[OUT][k].numpy(), offsets.numpy(),
                                        {layer: per_track[layer][k].numpy() for layer in writer.layers})
                         for k, (key, _, offsets) in enumerate(pending) if finite[k]])  # parts end between batches
        for k, (key, _, _) in enumerate(pending):
            if not finite[k]:  # e.g. finite samples so large the model overflows: never stored, never probed
                summary.tracks -= 1
                item = items[position[key]]
                bad_track(key, item, BadAudioError(item.path or item.id, "the model's embedding of it is not finite "
                                                                         "(samples too large?)"))
        summary.encoder_seconds += t1 - t0
        summary.write_seconds += time.perf_counter() - t1
        summary.windows += len(windows)
        pending, pending_windows = [], 0

    bar = progress_bar(total=len(items), desc=desc, unit="track", disable=not progress, file=sys.stderr,
                       dynamic_ncols=True)
    try:
        with torch.inference_mode():
            batches = iter(loader)
            while True:
                stop_if_interrupted()
                t0 = time.perf_counter()
                try:
                    index, wave, error, decode_seconds = next(batches)
                except StopIteration:
                    break
                summary.wait_seconds += time.perf_counter() - t0
                item = items[index]
                summary.decode_seconds += decode_seconds
                bar.update(1)
                if error is not None:
                    bad_track(keys[index], item, error)
                    continue
                t0 = time.perf_counter()
                try:
                    windows, offsets = embedder.track_windows(wave.to(device, non_blocking=True))
                except ValueError as exc:  # the front end's complaint about this wave (e.g. shorter than its FFT)
                    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    bad_track(keys[index], item, BadAudioError(item.path or item.id, f"the model's front end cannot take it: "
                                                                        f"{reason}"))
                    continue
                summary.frontend_seconds += time.perf_counter() - t0
                pending.append((keys[index], windows, offsets))
                pending_windows += len(windows)
                summary.tracks += 1
                summary.audio_seconds += len(wave) / embedder.sample_rate
                if pending_windows >= encode.ready_batch:
                    drain()
                    bar.set_postfix(xrt=f"{summary.audio_seconds / (time.perf_counter() - started):.0f}")
            drain()
    finally:
        bar.close()
        t0 = time.perf_counter()
        writer.flush()  # keep every finished track, also when interrupted
        summary.write_seconds += time.perf_counter() - t0


def _as_is(item: Any) -> Any:
    return item
