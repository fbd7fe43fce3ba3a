"""The journal of an extraction in progress: finished clips in numbered, atomic part files.

A killed extraction keeps every part it finished; the next one reads them (each whole, every
member's CRC checked) and embeds only the rest. A part that cannot be read whole (a disk
fault, a copy cut short) is deleted and its clips are embedded again. A writer holds a record
lock beside the journal, so a second process never mixes into or removes a journal in use.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from musicrep import atomic
from musicrep.layers import OUT
from musicrep.store.layout import (PART_ARRAYS, WINDOW_DTYPES, StoreError, TrackEmbedding, disk_error, part_arrays,
                                   pool)

log = logging.getLogger("musicrep.store")


def as_bytes(keys: list[str]) -> np.ndarray:
    """Keys as a byte-string array (UTF-8): a quarter of NumPy's unicode arrays, which matters
    when every clip of a catalog has one."""
    return np.array([k.encode() for k in keys], dtype=np.bytes_) if keys else np.zeros(0, "S1")


def key_hashes(keys: Iterable[str | bytes]) -> np.ndarray:
    """64-bit hashes of keys: what the writer sorts and matches to plan a segment (8 bytes a clip
    instead of a 64-character key); every match is confirmed on the keys themselves as the
    parts are copied, so a collision is an error, never a wrong row."""
    return np.fromiter((int.from_bytes(hashlib.blake2b(k if isinstance(k, bytes) else k.encode(),
                                                       digest_size=8).digest(), "little") for k in keys),
                       dtype=np.uint64)


def journal_lock(journal: Path) -> Path:
    """The lock a writer holds on a journal folder (beside it: the folder is removed when done)."""
    return journal.with_name(journal.name + ".lock")


@dataclass
class PartIndex:
    """The small arrays of one part file: enough to plan where its rows go in a segment."""

    path: Path
    hashes: np.ndarray        # key_hashes of its clips' keys
    counts: np.ndarray
    skipped: list[dict[str, str]]


class Journal:
    """Part files of one writer (one rank) of one store, under its lock."""

    def __init__(self, folder: Path, *, pooling: str, dtype: str, layers: tuple[str, ...],
                 flush_every: int = 256) -> None:
        if dtype not in WINDOW_DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(WINDOW_DTYPES)}, got {dtype!r}")
        if OUT in layers:
            raise ValueError(f"layers are the intermediate ones; {OUT!r} is always stored")
        self.folder, self.pooling, self.dtype, self.layers = folder, pooling, dtype, tuple(layers)
        self.flush_every = flush_every
        self._buffer: list[TrackEmbedding] = []
        self._pending_skips: list[dict[str, str]] = []
        self._lock = self._take_lock()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            done: set[str] = set()
            for part in self.index(done):
                done.update(s["id"] for s in part.skipped)
            self.done = frozenset(done)
        except BaseException:
            self.close()
            raise

    def _take_lock(self) -> int:
        """A record lock (``lockf``: not inherited by forked decode workers) beside the journal,
        opened without following a link; a journal another process writes is refused."""
        lock = journal_lock(self.folder)
        lock.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StoreError(f"{lock}: is a symbolic link; refusing to use it as a lock") from None
            raise disk_error(exc, lock) from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                raise StoreError(f"{self.folder}: another process is writing this store (it holds {lock}); "
                                 "run again when it has finished") from None
            raise
        return fd

    def close(self) -> None:
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1

    def remove(self) -> None:
        """Delete the journal (its parts are in a segment now); ours alone: we hold its lock."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def array_names(self) -> list[str]:
        return [*PART_ARRAYS, *(name for layer in self.layers for name in part_arrays(layer))]

    def part_files(self) -> list[Path]:
        return sorted(self.folder.glob("part-*.npz"))

    def read_part(self, part: Path) -> dict[str, np.ndarray] | None:
        """A part's arrays, all read (so every member's CRC is checked), or None if any is bad."""
        try:
            with np.load(part, allow_pickle=False) as data:
                arrays = {name: data[name] for name in self.array_names()}
            skipped = json.loads(str(arrays["skipped"]))
            if not isinstance(skipped, list) or not all(isinstance(s, dict) and isinstance(s.get("id"), str)
                                                        for s in skipped):
                raise ValueError("skipped is not a list of records")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            log.warning("%s: unreadable part file (%s); discarded, its clips are embedded again", part, exc)
            return None
        if arrays["ids"].dtype.kind != "S":
            log.warning("%s: part file of another layout; discarded, its clips are embedded again", part)
            return None
        n, total = len(arrays["ids"]), int(arrays["counts"].sum())
        layers = [part_arrays(layer) for layer in (OUT, *self.layers)]
        if not (len(arrays["counts"]) == n and len(arrays["offsets"]) == total
                and all(len(arrays[pooled]) == n and len(arrays[windows]) == total
                        and arrays[windows].dtype == np.dtype(self.dtype) for pooled, windows in layers)):
            log.warning("%s: part file with inconsistent arrays; discarded, its clips are embedded again", part)
            return None
        return arrays

    def index(self, keys: set[str] | None = None) -> list[PartIndex]:
        """Every sound part's small arrays (``keys``: add its clips' keys there); a broken part is
        deleted (its clips count as missing)."""
        index = []
        for part in self.part_files():
            arrays = self.read_part(part)
            if arrays is None:
                part.unlink(missing_ok=True)
                continue
            if keys is not None:
                keys.update(i.decode() for i in arrays["ids"])
            index.append(PartIndex(part, key_hashes(arrays["ids"]), arrays["counts"],
                                   json.loads(str(arrays["skipped"]))))
        return index

    def add_many(self, tracks: list[TrackEmbedding]) -> None:
        """Add clips, then write a part if ``flush_every`` are waiting. The extractor adds one
        encoder batch at a time, so a part never ends inside a batch: a resumed extraction
        batches its windows exactly as an uninterrupted one would, and gets the same numbers."""
        self._buffer.extend(tracks)
        if len(self._buffer) >= self.flush_every:
            self.flush()

    def skip(self, key: str, path: str, reason: str) -> None:
        """Record a clip that could not be decoded; the store lists it as skipped."""
        self._pending_skips.append({"id": key, "path": path, "reason": reason})

    def flush(self) -> None:
        if not self._buffer and not self._pending_skips:
            return
        parts = self.part_files()
        index = int(parts[-1].stem.split("-")[1]) + 1 if parts else 0  # after a discarded one too
        part = self.folder / f"part-{index:06d}.npz"
        tracks = self._buffer
        layers = {}
        for layer in (OUT, *self.layers):
            windows = [t.windows if layer == OUT else t.layers[layer] for t in tracks]
            pooled_name, windows_name = part_arrays(layer)
            # pooled from the full-precision windows, whatever dtype they are kept in
            layers[pooled_name] = (np.stack([pool(w, self.pooling) for w in windows]).astype(np.float32)
                                   if tracks else np.zeros((0, 0), np.float32))
            layers[windows_name] = (np.concatenate(windows).astype(self.dtype) if tracks
                                    else np.zeros((0, 0), self.dtype))
        try:
            with atomic.atomic_path(part) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, ids=as_bytes([t.id for t in tracks]),
                             offsets=np.concatenate([t.offsets for t in tracks]).astype(np.float32)
                             if tracks else np.zeros(0, np.float32),
                             counts=np.array([len(t.windows) for t in tracks], dtype=np.int64),
                             skipped=np.array(json.dumps(self._pending_skips)), **layers)
        except OSError as exc:  # full disk, file-size limit, read-only folder: the parts so far stay
            raise disk_error(exc, part) from None
        self._pending_skips.clear()
        self._buffer = []
