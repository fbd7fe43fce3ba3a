"""The extractor: every track of a task through front end + encoder into an HDF5 store (the
embed stage, ``musicrep.pipeline.embed``, decides what to extract and caches the stores).

Tracks are decoded and resampled by a pool of data-loader workers that stays ahead of the
encoder through a bounded queue (``prefetch`` tracks per worker) and hands tracks over in the
task's order whichever worker finishes first, so the part files stay a prefix of the task and
resume as before. On CUDA the waves arrive in pinned memory and are copied without blocking.
The windows of several tracks are batched through the encoder. Finished tracks go to the
store's atomic part files, so a killed extraction resumes where it stopped.
"""
from __future__ import annotations

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
from musicrep.store import StoreWriter, TrackEmbedding
from musicrep.tasks import encode_target

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


def extract(embedder: Embedder, task: Any, store_path: str | Path, provenance: dict[str, Any], *,
            batch_size: int | None = None, on_bad_audio: str = "skip", num_workers: int | None = None,
            device: torch.device | str = "cpu", progress: bool = True, flush_every: int = 128,
            shard: tuple[int, int] = (0, 1), dtype: str = "float32", layers: Sequence[str] = (OUT,),
            compile: bool = False) -> EmbedSummary:
    """Embed every item of ``task`` into the store at ``store_path`` (resuming if possible).

    ``num_workers``: decode processes (None: ``default_workers()``; 0 decodes in this process).
    ``batch_size``: windows per encoder call (None: sized for the device, ``accel.WindowEncoder``);
    ``compile``: the encoder through ``torch.compile``.
    ``dtype``: of the stored window embeddings ("float32" or "float16"; pooled ones stay float32).
    ``shard=(rank, world_size)`` embeds every world_size-th item from ``rank`` on: under
    torchrun each rank writes its own store and ``musicrep.store.join_shards`` joins them.
    ``layers``: the encoder's layers to store (``musicrep.layers``), all from one forward pass;
    the embedding ("out") is always stored.
    """
    device = torch.device(device)
    embedder = to_device(embedder, device).eval()
    intermediate = tuple(layer for layer in layers if layer != OUT)
    encode = WindowEncoder(embedder.encoder, device, batch_size, compile=compile, layers=(*intermediate, OUT))
    policy = BadAudioPolicy(on_bad_audio)
    workers = default_workers() if num_workers is None else num_workers
    writer = StoreWriter(Path(store_path), provenance, kind=task.kind, label_names=list(task.label_names),
                         pooling=embedder.pooling, flush_every=flush_every, dtype=dtype, layers=intermediate)
    rank, world_size = shard
    shard_items = task.items()[rank::world_size]
    order = [item.id for item in shard_items]
    summary = EmbedSummary(0, 0, 0, 0.0, 0.0, 0.0, 0.0, len(writer.done_ids))
    started = time.perf_counter()
    restore_autotune = autotune_fixed_shapes(device)
    try:
        done = writer.done_ids
        items = [item for item in shard_items if item.id not in done]
        name = f"embed {Path(store_path).parent.name}/{Path(store_path).stem}"
        if progress and len(items) < len(shard_items):  # an interrupted extraction, resumed: say so
            print(f"{name}: {len(shard_items) - len(items)} of {len(shard_items)} tracks already embedded, "
                  f"{len(items)} to go", file=sys.stderr, flush=True)
        _embed_items(embedder, task, items, writer, summary, policy=policy, encode=encode,
                     workers=workers, device=device, progress=progress, desc=name)
        missing = writer.missing(order)
        if missing:  # a part deleted or damaged since this run read the folder
            log.warning("%s: %d finished tracks are in no part file any more; embedding them again",
                        store_path, len(missing))
            wanted = set(missing)
            _embed_items(embedder, task, [item for item in shard_items if item.id in wanted], writer, summary,
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


def _embed_items(embedder: Embedder, task: Any, items: list[Any], writer: StoreWriter, summary: EmbedSummary, *,
                 policy: BadAudioPolicy, encode: WindowEncoder, workers: int, device: torch.device, progress: bool,
                 desc: str) -> None:
    """Decode, window, encode and hand ``items`` to the writer in their order; every finished
    track reaches a part file, also when interrupted."""
    loader = DataLoader(_TrackAudio(task, items, embedder.sample_rate), batch_size=None, shuffle=False,
                        num_workers=workers, collate_fn=_as_is, pin_memory=device.type == "cuda",
                        prefetch_factor=PREFETCH if workers else None, worker_init_fn=init_worker)
    pending: list[tuple[Any, torch.Tensor, torch.Tensor]] = []
    pending_windows = 0
    started = time.perf_counter()

    def bad_track(item: Any, error: BadAudioError) -> None:
        """A track that gives no embedding: fails the run, or is skipped, named and recorded (a
        rerun does not try it again)."""
        policy.handle(error)  # raises under on_bad_audio = "fail"
        writer.skip(item.id, str(item.path or ""), error.reason)
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
        writer.add_many([TrackEmbedding(item.id, item.split, encode_target(task.kind, task.label_names, item.labels),
                                        per_track[OUT][k].numpy(), offsets.numpy(),
                                        {layer: per_track[layer][k].numpy() for layer in writer.layers})
                         for k, (item, _, offsets) in enumerate(pending) if finite[k]])  # parts end between batches
        for k, (item, _, _) in enumerate(pending):
            if not finite[k]:  # e.g. finite samples so large the model overflows: never stored, never probed
                summary.tracks -= 1
                bad_track(item, BadAudioError(item.path or item.id, "the model's embedding of it is not finite "
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
                    bad_track(item, error)
                    continue
                t0 = time.perf_counter()
                try:
                    windows, offsets = embedder.track_windows(wave.to(device, non_blocking=True))
                except ValueError as exc:  # the front end's complaint about this wave (e.g. shorter than its FFT)
                    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    bad_track(item, BadAudioError(item.path or item.id, f"the model's front end cannot take it: "
                                                                        f"{reason}"))
                    continue
                summary.frontend_seconds += time.perf_counter() - t0
                pending.append((item, windows, offsets))
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
