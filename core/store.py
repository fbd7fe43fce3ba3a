"""The HDF5 embedding store: one file per model x task, written once, read many times.

Writing is resumable and crash-safe: finished tracks go to numbered part files (each written
atomically) in ``<store>.parts/``; a resumed extraction skips the tracks its parts hold; the
final HDF5 file is assembled from the parts into a temporary file and renamed into place, so a
file under the store's name is always complete. A store (or a set of parts) whose provenance
differs from the requested one is never reused; a part file that cannot be read whole (a disk
fault, a copy cut short) is discarded and its tracks are embedded again. Rows are stored in
the task's item order, however often the extraction was interrupted.

Layout of a store::

    /embeddings          [N, D']  pooled track embeddings (mean, or mean and std)
    /targets             [N, L]   multi-hot labels (classification) or values (regression)
    /ids, /split         [N]      track ids and split names
    /windows/embeddings  [W, D]   every window's embedding
    /windows/offsets     [W]      window start times in seconds
    /windows/start, /windows/count [N]  each track's rows in /windows
    attributes: provenance (JSON), kind, label_names (JSON), skipped (JSON), musicrep_version
"""
from __future__ import annotations

import json
import logging
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from musicrep import atomic
from musicrep._version import __version__
from musicrep.errors import MusicrepError
from musicrep.rundir import parts_folder

STRING = h5py.string_dtype("utf-8")
PART_ARRAYS = ("ids", "split", "targets", "windows", "offsets", "counts", "skipped")
log = logging.getLogger("musicrep.store")


class StoreError(MusicrepError):
    """A store that is incomplete, from another model, or unreadable."""


def _provenance_text(provenance: dict[str, Any]) -> str:
    return json.dumps(provenance, sort_keys=True, default=str)


def pool(windows: np.ndarray, pooling: str) -> np.ndarray:
    """A track's embedding from its windows' embeddings ``[W, D]``."""
    mean = windows.mean(axis=0)
    if pooling == "mean":
        return mean
    if pooling == "mean+std":
        return np.concatenate([mean, windows.std(axis=0)])
    raise ValueError(f"pooling must be 'mean' or 'mean+std', got {pooling!r}")


@dataclass
class TrackEmbedding:
    id: str
    split: str
    target: np.ndarray        # [L]
    windows: np.ndarray       # [W, D]
    offsets: np.ndarray       # [W] seconds


@dataclass
class StoreWriter:
    """Collects finished tracks into atomic part files, then assembles the store."""

    path: Path
    provenance: dict[str, Any]
    kind: str
    label_names: list[str]
    pooling: str = "mean"
    flush_every: int = 256
    _buffer: list[TrackEmbedding] = field(default_factory=list)
    _skipped: list[dict[str, str]] = field(default_factory=list)      # in part files already
    _pending_skips: list[dict[str, str]] = field(default_factory=list)  # not yet in a part file

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.parts = parts_folder(self.path)
        stamp = self.parts / "provenance.json"
        if self.parts.exists():
            same = stamp.exists() and stamp.read_text() == _provenance_text(self.provenance)
            if not same:  # parts from another model or config: never mixed in
                shutil.rmtree(self.parts)
        self.parts.mkdir(parents=True, exist_ok=True)
        if not stamp.exists():
            atomic.write_text(stamp, _provenance_text(self.provenance))
        self._done = self._load_done()

    def _part_files(self) -> list[Path]:
        return sorted(self.parts.glob("part-*.npz"))

    def _read_part(self, part: Path) -> dict[str, np.ndarray] | None:
        """A part's arrays, all read (so every member's CRC is checked), or None if any is bad."""
        try:
            with np.load(part, allow_pickle=False) as data:
                arrays = {name: data[name] for name in PART_ARRAYS}
            json.loads(str(arrays["skipped"]))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            log.warning("%s: unreadable part file (%s); discarded, its tracks are embedded again", part, exc)
            return None
        n = len(arrays["ids"])
        if not (len(arrays["split"]) == len(arrays["targets"]) == len(arrays["counts"]) == n
                and len(arrays["windows"]) == len(arrays["offsets"]) == int(arrays["counts"].sum())):
            log.warning("%s: part file with inconsistent array lengths; discarded, its tracks are "
                        "embedded again", part)
            return None
        return arrays

    def _load_done(self) -> set[str]:
        done: set[str] = set()
        for part in self._part_files():
            arrays = self._read_part(part)
            if arrays is None:
                part.unlink()
                continue
            done.update(str(i) for i in arrays["ids"])
            self._skipped.extend(json.loads(str(arrays["skipped"])))
        done.update(s["id"] for s in self._skipped)
        return done

    @property
    def done_ids(self) -> set[str]:
        """Tracks already written (or skipped as bad) by an earlier, interrupted run."""
        return set(self._done)

    def add(self, track: TrackEmbedding) -> None:
        self.add_many([track])

    def add_many(self, tracks: list[TrackEmbedding]) -> None:
        """Add tracks, then write a part if ``flush_every`` tracks are waiting. The extractor adds
        one encoder batch at a time, so a part never ends inside a batch: a resumed extraction
        batches its windows exactly as an uninterrupted one would, and gets the same numbers."""
        self._buffer.extend(tracks)
        self._done.update(t.id for t in tracks)
        if len(self._buffer) >= self.flush_every:
            self.flush()

    def skip(self, id: str, path: str, reason: str) -> None:
        """Record a bad track; it is listed in the store's ``skipped`` attribute."""
        self._pending_skips.append({"id": id, "path": path, "reason": reason})
        self._done.add(id)

    def flush(self) -> None:
        if not self._buffer and not self._pending_skips:
            return
        parts = self._part_files()
        index = int(parts[-1].stem.split("-")[1]) + 1 if parts else 0  # after a discarded one too
        part = self.parts / f"part-{index:06d}.npz"
        tracks = self._buffer
        counts = np.array([len(t.windows) for t in tracks], dtype=np.int64)
        dim = tracks[0].windows.shape[1] if tracks else 0
        with atomic.atomic_path(part) as tmp:
            with open(tmp, "wb") as f:
                np.savez(
                    f,
                    ids=np.array([t.id for t in tracks], dtype=np.str_),
                    split=np.array([t.split for t in tracks], dtype=np.str_),
                    targets=np.stack([t.target for t in tracks]).astype(np.float32)
                    if tracks else np.zeros((0, len(self.label_names)), np.float32),
                    windows=np.concatenate([t.windows for t in tracks]).astype(np.float32)
                    if tracks else np.zeros((0, dim), np.float32),
                    offsets=np.concatenate([t.offsets for t in tracks]).astype(np.float32)
                    if tracks else np.zeros(0, np.float32),
                    counts=counts,
                    skipped=np.array(json.dumps(self._pending_skips)),
                )
        self._skipped.extend(self._pending_skips)
        self._pending_skips.clear()
        self._buffer = []

    def finish(self, order: list[str] | None = None) -> Path:
        """Assemble the parts into the final store (atomically) and remove the parts.

        ``order``: the track ids in the task's order; the rows follow it, so the store does not
        depend on which parts an interrupted run left behind.
        """
        self.flush()
        ids, split, targets, windows, offsets, counts = [], [], [], [], [], []
        for part in self._part_files():
            arrays = self._read_part(part)
            if arrays is None:  # broken since this writer read it: nothing sound to assemble
                part.unlink()
                raise StoreError(f"{part}: part file became unreadable; run again to embed its tracks")
            ids.append(arrays["ids"]), split.append(arrays["split"]), targets.append(arrays["targets"])
            windows.append(arrays["windows"]), offsets.append(arrays["offsets"])
            counts.append(arrays["counts"])
        if not ids or sum(len(i) for i in ids) == 0:
            raise StoreError(f"{self.path}: no track could be embedded (skipped: {len(self._skipped)})")
        ids, split, targets = np.concatenate(ids), np.concatenate(split), np.concatenate(targets)
        all_windows = np.concatenate([w for w in windows if len(w)])
        all_offsets, all_counts = np.concatenate(offsets), np.concatenate(counts)
        skipped = self._skipped
        if order is not None:
            position = {id: i for i, id in enumerate(order)}
            rows = np.argsort([position.get(str(i), len(order)) for i in ids], kind="stable")
            firsts = np.concatenate([[0], np.cumsum(all_counts)[:-1]])
            window_rows = np.concatenate([np.arange(firsts[r], firsts[r] + all_counts[r]) for r in rows])
            ids, split, targets, all_counts = ids[rows], split[rows], targets[rows], all_counts[rows]
            all_windows, all_offsets = all_windows[window_rows], all_offsets[window_rows]
            skipped = sorted(skipped, key=lambda s: position.get(s["id"], len(order)))
        starts = np.concatenate([[0], np.cumsum(all_counts)[:-1]]).astype(np.int64)
        pooled = np.stack([pool(all_windows[s:s + c], self.pooling) for s, c in zip(starts, all_counts)])
        with atomic.atomic_path(self.path) as tmp:
            with h5py.File(tmp, "w") as h5:
                h5.create_dataset("embeddings", data=pooled.astype(np.float32), chunks=True)
                h5.create_dataset("targets", data=targets)
                h5.create_dataset("ids", data=ids.astype(object), dtype=STRING)
                h5.create_dataset("split", data=split.astype(object), dtype=STRING)
                group = h5.create_group("windows")
                group.create_dataset("embeddings", data=all_windows, chunks=True)
                group.create_dataset("offsets", data=all_offsets)
                group.create_dataset("start", data=starts)
                group.create_dataset("count", data=all_counts)
                h5.attrs["provenance"] = _provenance_text(self.provenance)
                h5.attrs["kind"] = self.kind
                h5.attrs["label_names"] = json.dumps(self.label_names)
                h5.attrs["pooling"] = self.pooling
                h5.attrs["skipped"] = json.dumps(skipped)
                h5.attrs["musicrep_version"] = __version__
                h5.attrs["complete"] = True
        shutil.rmtree(self.parts)
        return self.path


class EmbeddingStore:
    """Read access to a finished store; arrays are read lazily, split by split."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._h5 = h5py.File(self.path, "r")
        except (OSError, FileNotFoundError) as exc:
            raise StoreError(f"{self.path}: cannot open embedding store ({exc})") from None
        if not self._h5.attrs.get("complete", False):
            self._h5.close()
            raise StoreError(f"{self.path}: store is incomplete")
        self.provenance = json.loads(self._h5.attrs["provenance"])
        self.kind = str(self._h5.attrs["kind"])
        self.label_names = json.loads(self._h5.attrs["label_names"])
        self.skipped = json.loads(self._h5.attrs["skipped"])
        self.ids = self._h5["ids"].asstr()[:]
        self.splits = self._h5["split"].asstr()[:]

    def __enter__(self) -> "EmbeddingStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._h5.close()

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self._h5["embeddings"].shape[1])

    def indices(self, split: str | None = None) -> np.ndarray:
        return np.arange(len(self.ids)) if split is None else np.flatnonzero(self.splits == split)

    def embeddings(self, split: str | None = None) -> np.ndarray:
        return self._h5["embeddings"][self.indices(split)]

    def targets(self, split: str | None = None) -> np.ndarray:
        return self._h5["targets"][self.indices(split)]

    def timeline(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """One track's window embeddings ``[W, D]`` and their start times in seconds."""
        start = int(self._h5["windows/start"][index])
        count = int(self._h5["windows/count"][index])
        group = self._h5["windows"]
        return group["embeddings"][start:start + count], group["offsets"][start:start + count]

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything, as plain arrays (for comparing two stores)."""
        out = {name: self._h5[name][:] for name in ("embeddings", "targets")}
        out.update({f"windows/{n}": self._h5[f"windows/{n}"][:] for n in ("embeddings", "offsets", "start", "count")})
        out["ids"], out["split"] = self.ids, self.splits
        return out


def join_shards(shards: list[Path], path: Path) -> Path:
    """One store over per-rank shard stores: the big arrays as HDF5 virtual datasets (no copy),
    the small per-track index rewritten for the joined row order."""
    opened = [EmbeddingStore(s) for s in shards]
    try:
        first = opened[0]
        for other in opened[1:]:
            if other.provenance != first.provenance:
                raise StoreError(f"{other.path}: shard made with another provenance than {first.path}")
        with atomic.atomic_path(path) as tmp:
            with h5py.File(tmp, "w") as h5:
                for name in ("embeddings", "targets", "windows/embeddings", "windows/offsets", "windows/count"):
                    sources = [o._h5[name] for o in opened]
                    rows = sum(s.shape[0] for s in sources)
                    layout = h5py.VirtualLayout(shape=(rows, *sources[0].shape[1:]), dtype=sources[0].dtype)
                    at = 0
                    for shard, source in zip(shards, sources):
                        # relative file names keep the joined store valid when the folder moves
                        layout[at:at + source.shape[0]] = h5py.VirtualSource(
                            shard.name, name, shape=source.shape)
                        at += source.shape[0]
                    h5.create_virtual_dataset(name, layout)
                counts = np.concatenate([o._h5["windows/count"][:] for o in opened])
                h5.create_dataset("windows/start", data=np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64))
                h5.create_dataset("ids", data=np.concatenate([o.ids for o in opened]).astype(object), dtype=STRING)
                h5.create_dataset("split", data=np.concatenate([o.splits for o in opened]).astype(object),
                                  dtype=STRING)
                for key, value in first._h5.attrs.items():
                    h5.attrs[key] = value
                h5.attrs["skipped"] = json.dumps([s for o in opened for s in o.skipped])
                h5.attrs["shards"] = json.dumps([s.name for s in shards])
    finally:
        for o in opened:
            o.close()
    return path


def finished_provenance(path: str | Path) -> dict[str, Any] | None:
    """The provenance of the finished store at ``path``; None for a missing, partial or unreadable one."""
    try:
        with h5py.File(path, "r") as h5:
            return json.loads(h5.attrs["provenance"]) if h5.attrs.get("complete", False) else None
    except (OSError, KeyError, ValueError):  # missing, truncated, not HDF5, or no readable provenance
        return None


def store_status(path: str | Path, provenance: dict[str, Any]) -> str:
    """Whether ``path`` holds a finished store made with exactly this provenance: "complete",
    or why not: "missing", "unreadable", "incomplete" or "made from other inputs" (weights, audio or
    musicrep version: a store from another *config* is refused earlier, by the pipeline)."""
    path = Path(path)
    if not path.exists():
        return "missing"
    try:
        with h5py.File(path, "r") as h5:
            if not h5.attrs.get("complete", False):
                return "incomplete"
            same = h5.attrs.get("provenance") == _provenance_text(provenance)
    except OSError:  # truncated, overwritten, not HDF5
        return "unreadable"
    return "complete" if same else "made from other inputs"


def is_complete(path: str | Path, provenance: dict[str, Any]) -> bool:
    """Whether ``path`` holds a finished store made with exactly this provenance."""
    return store_status(path, provenance) == "complete"
