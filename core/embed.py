"""The extractor: every track of a task through front end + encoder into an HDF5 store (the
embed stage, ``musicrep.pipeline.embed``, decides what to extract and caches the stores).

Tracks are decoded in data-loader workers, turned into windows of features on the device,
and the windows of several tracks are batched through the encoder. Finished tracks go to the
store's atomic part files, so a killed extraction resumes where it stopped.
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from musicrep.audio import BadAudioError, BadAudioPolicy
from musicrep.model import Embedder
from musicrep.store import StoreWriter, TrackEmbedding
from musicrep.tasks import encode_target


@dataclass
class EmbedSummary:
    tracks: int
    windows: int
    skipped: int
    audio_seconds: float
    wall_seconds: float
    decode_seconds: float
    write_seconds: float
    resumed_tracks: int
    #: the files skipped as bad audio in this call, {"path", "reason"} each (``skipped`` counts them)
    bad_files: list[dict[str, str]] = field(default_factory=list)

    @property
    def x_realtime(self) -> float:
        return self.audio_seconds / max(self.wall_seconds, 1e-9)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "x_realtime": self.x_realtime}


class _TrackAudio(Dataset):
    """Decodes tracks in loader workers; a bad file comes back as its error, not a crash."""

    def __init__(self, task: Any, items: list[Any], sample_rate: int) -> None:
        self.task, self.items, self.sample_rate = task, items, sample_rate

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray | None, BadAudioError | None, float]:
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
        return index, wave, error, time.perf_counter() - start


def extract(embedder: Embedder, task: Any, store_path: str | Path, provenance: dict[str, Any], *,
            batch_size: int = 32, on_bad_audio: str = "skip", num_workers: int = 0,
            device: torch.device | str = "cpu", progress: bool = True, flush_every: int = 128,
            shard: tuple[int, int] = (0, 1)) -> EmbedSummary:
    """Embed every item of ``task`` into the store at ``store_path`` (resuming if possible).

    ``shard=(rank, world_size)`` embeds every world_size-th item from ``rank`` on: under
    torchrun each rank writes its own store and ``musicrep.store.join_shards`` joins them.
    """
    device = torch.device(device)
    embedder = embedder.to(device).eval()
    policy = BadAudioPolicy(on_bad_audio)
    writer = StoreWriter(Path(store_path), provenance, kind=task.kind, label_names=list(task.label_names),
                         pooling=embedder.pooling, flush_every=flush_every)
    done = writer.done_ids
    rank, world_size = shard
    shard_items = task.items()[rank::world_size]
    items = [item for item in shard_items if item.id not in done]
    loader = DataLoader(_TrackAudio(task, items, embedder.sample_rate), batch_size=None, shuffle=False,
                        num_workers=num_workers, collate_fn=lambda x: x)
    summary = EmbedSummary(0, 0, 0, 0.0, 0.0, 0.0, 0.0, len(done))
    pending: list[tuple[Any, torch.Tensor, torch.Tensor]] = []
    pending_windows = 0
    started = time.perf_counter()

    def drain() -> None:
        nonlocal pending, pending_windows
        if not pending:
            return
        windows = torch.cat([w for _, w, _ in pending])
        outputs = torch.cat([embedder.encoder(chunk) for chunk in windows.split(batch_size)]).float().cpu()
        t0 = time.perf_counter()
        per_track = outputs.split([len(w) for _, w, _ in pending])
        writer.add_many([TrackEmbedding(item.id, item.split, encode_target(task.kind, task.label_names, item.labels),
                                        emb.numpy(), offsets.numpy())
                         for (item, _, offsets), emb in zip(pending, per_track)])  # parts end between batches
        summary.write_seconds += time.perf_counter() - t0
        summary.windows += len(windows)
        pending, pending_windows = [], 0

    bar = tqdm(total=len(items), desc=f"embed {Path(store_path).parent.name}/{Path(store_path).stem}", unit="track", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    try:
        with torch.inference_mode():
            for index, wave, error, decode_seconds in loader:
                item = items[index]
                summary.decode_seconds += decode_seconds
                bar.update(1)
                if error is not None:
                    policy.handle(error)  # raises under on_bad_audio = "fail"
                    writer.skip(item.id, str(item.path or ""), error.reason)
                    summary.skipped += 1
                    summary.bad_files.append({"path": error.path, "reason": error.reason})
                    continue
                windows, offsets = embedder.track_windows(torch.from_numpy(wave).to(device))
                pending.append((item, windows, offsets))
                pending_windows += len(windows)
                summary.tracks += 1
                summary.audio_seconds += len(wave) / embedder.sample_rate
                if pending_windows >= batch_size:
                    drain()
                    bar.set_postfix(xrt=f"{summary.audio_seconds / (time.perf_counter() - started):.0f}")
            drain()
    finally:
        bar.close()
        t0 = time.perf_counter()
        writer.flush()  # keep every finished track, also when interrupted
        summary.write_seconds += time.perf_counter() - t0
    t0 = time.perf_counter()
    writer.finish(order=[item.id for item in shard_items])
    summary.write_seconds += time.perf_counter() - t0
    summary.wall_seconds = time.perf_counter() - started
    return summary
