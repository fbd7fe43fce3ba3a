"""The HDF5 embedding store: one file per model x task, written once, read many times.

Writing is resumable and crash-safe: finished tracks go to numbered part files (each written
atomically) in ``<store>.parts/``; a resumed extraction skips the tracks its parts hold; the
final HDF5 file is assembled from the parts into a temporary file and renamed into place, so a
file under the store's name is always complete. A store (or a set of parts) whose provenance
differs from the requested one is never reused; a part file that cannot be read whole (a disk
fault, a copy cut short) is discarded and its tracks are embedded again. Rows are stored in
the task's item order, however often the extraction was interrupted.

Assembly streams: the parts are copied one at a time into datasets sized from their small
index arrays, so peak memory follows the part size, not the number of tracks. Finishing checks
that the parts hold exactly the task's items (tracks plus skipped ones); a writer holds a lock
on its parts folder, so a second process never mixes into or removes a folder being written.
Every numeric dataset carries HDF5's fletcher32 checksum, the string datasets a SHA-256 in the
attributes, and ``items`` the row count: ``store_status`` verifies all three.

Layout of a store::

    /embeddings          [N, D']  pooled track embeddings (mean, or mean and std)
    /targets             [N, L]   multi-hot labels (classification) or values (regression)
    /ids, /split         [N]      track ids and split names
    /windows/embeddings  [W, D]   every window's embedding (float32, or float16 if asked)
    /windows/offsets     [W]      window start times in seconds
    /windows/start, /windows/count [N]  each track's rows in /windows
    /layers/<layer>/embeddings [N, D_layer']  an intermediate layer's pooled track embeddings
    /layers/<layer>/windows    [W, D_layer]   its window embeddings (rows as in /windows)
    attributes: provenance (JSON), kind, label_names (JSON), skipped (JSON), musicrep_version,
                items (N), checksums (JSON: SHA-256 of /ids and /split),
                layers (JSON: the stored layers, "out" last; absent when only "out" is stored)

``/embeddings`` and ``/windows`` always hold the encoder's embedding, the layer named "out";
the ``/layers`` group exists only when intermediate layers were asked for (see
``musicrep.layers``), so a store of "out" alone is laid out as before layers existed.
"""
from __future__ import annotations

import errno
import fcntl
import gc
import hashlib
import json
import logging
import os
import resource
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np

from musicrep import atomic
from musicrep._version import __version__
from musicrep.errors import MusicrepError
from musicrep.layers import OUT
from musicrep.rundir import parts_folder, parts_lock

STRING = h5py.string_dtype("utf-8")
PART_ARRAYS = ("ids", "split", "targets", "windows", "pooled", "offsets", "counts", "skipped")
WINDOW_DTYPES = ("float32", "float16")
#: the numeric datasets, each checked by fletcher32 when read
NUMERIC = ("embeddings", "targets", "windows/embeddings", "windows/offsets", "windows/start", "windows/count")
log = logging.getLogger("musicrep.store")


def layer_datasets(layer: str) -> tuple[str, str]:
    """The datasets of one layer: its pooled track embeddings and its window embeddings."""
    return ("embeddings", "windows/embeddings") if layer == OUT else (f"layers/{layer}/embeddings",
                                                                      f"layers/{layer}/windows")


def _part_arrays(layer: str) -> tuple[str, str]:
    """A layer's arrays in a part file (pooled, windows); "out" keeps the names parts always had."""
    return ("pooled", "windows") if layer == OUT else (f"layer-{layer}-pooled", f"layer-{layer}-windows")


def _stored_layers(h5: h5py.File) -> list[str]:
    return json.loads(h5.attrs["layers"]) if "layers" in h5.attrs else [OUT]


def _numeric(h5: h5py.File) -> list[str]:
    """Every numeric dataset of a store: ``NUMERIC`` and its intermediate layers'."""
    return [*NUMERIC, *(name for layer in _stored_layers(h5) if layer != OUT for name in layer_datasets(layer))]


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
    #: the intermediate layers' window embeddings, ``{layer: [W, D_layer]}``
    layers: dict[str, np.ndarray] = field(default_factory=dict)


def _strings_digest(values: np.ndarray) -> str:
    """SHA-256 of a string dataset's values (HDF5 checksums cannot cover variable-length strings)."""
    digest = hashlib.sha256()
    for value in values:
        digest.update(str(value).encode("utf-8") + b"\0")
    return digest.hexdigest()


def _disk_error(exc: OSError, path: Path) -> StoreError:
    """A full disk or a file-size limit as one line naming the file (HDF5's own report is a chain
    of library tracebacks without the path)."""
    reason = exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc))
    return StoreError(f"{reason}: {path}; finished work is kept")


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    """Start this process's peak-memory count (VmHWM) afresh; a forked child inherits its parent's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:  # not Linux, or not allowed: the peak then counts from the fork
        pass


def _full(tmp: Path) -> int | None:
    """ENOSPC or EFBIG when the disk or the file-size limit is what stopped ``tmp`` growing (for a
    writer that died without saying why: libhdf5 crashes on some failed writes), else None."""
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    size = tmp.stat().st_size if tmp.exists() else 0
    if limit != resource.RLIM_INFINITY and size + (64 << 10) >= limit:
        return errno.EFBIG
    return errno.ENOSPC if shutil.disk_usage(tmp.parent).free < (1 << 20) else None


def _write_in_child(write: Callable[[], None], path: Path, tmp: Path) -> int:
    """Run ``write`` (the HDF5 writing) in a forked process; return how many bytes its resident
    memory grew.

    libhdf5 cannot close a file whose writes failed (a full disk, a file-size limit): the handle
    stays open and the library's exit handler then crashes the process (exit 139, seen on a
    2 MB tmpfs and under RLIMIT_FSIZE). A child that ends with ``os._exit`` never runs that
    handler, so a failed write becomes one error naming ``path``, and the caller lives on."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no return, no exit handlers, whatever happens
        code = 0
        gc.disable()  # no collection may free (and so close) a failed libhdf5 handle: that crashes
        try:
            os.close(read_end)
            _reset_peak()
            start = _rss_kib("VmRSS")
            write()
            message = json.dumps({"grew": max(0, _rss_kib("VmHWM") - start) * 1024})
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
            # only our own messages are formatted: formatting a failed libhdf5 call's can crash
            number = getattr(exc, "errno", None)
            code, message = 1, json.dumps({"errno": number if isinstance(number, int) else None,
                                           "error": str(exc) if isinstance(exc, MusicrepError) else type(exc).__name__})
        try:
            os.write(write_end, message.encode())
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        reply = pipe.read()
    _, status = os.waitpid(pid, 0)
    result = json.loads(reply) if reply else {}
    if status == 0 and "grew" in result:
        return int(result["grew"])
    number = result.get("errno") or _full(tmp)
    if number in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES):
        raise _disk_error(OSError(number, os.strerror(number)), path)
    died = f"its writer died: signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else None
    raise StoreError(f"{path}: writing the store failed ({result.get('error') or died or f'exit {status}'}); "
                     "finished work is kept")


@dataclass
class _PartIndex:
    """The small arrays of one part file: enough to plan where its rows go in the store."""

    path: Path
    ids: np.ndarray
    split: np.ndarray
    targets: np.ndarray
    counts: np.ndarray
    skipped: list[dict[str, str]]


@dataclass
class StoreWriter:
    """Collects finished tracks into atomic part files, then streams them into the store."""

    path: Path
    provenance: dict[str, Any]
    kind: str
    label_names: list[str]
    pooling: str = "mean"
    flush_every: int = 256
    dtype: str = "float32"   # of the window embeddings; pooled ones are always float32
    #: intermediate layers stored beside the embedding ("out"), each track's ``layers`` holds them
    layers: tuple[str, ...] = ()
    #: bytes the store's assembly added to its process's resident memory (flat in the tracks)
    assembly_memory: int = 0
    _buffer: list[TrackEmbedding] = field(default_factory=list)
    _skipped: list[dict[str, str]] = field(default_factory=list)      # in part files already
    _pending_skips: list[dict[str, str]] = field(default_factory=list)  # not yet in a part file

    def __post_init__(self) -> None:
        if self.dtype not in WINDOW_DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(WINDOW_DTYPES)}, got {self.dtype!r}")
        self.path = Path(self.path)
        self.layers = tuple(self.layers)
        if OUT in self.layers:
            raise ValueError(f"layers are the intermediate ones; {OUT!r} is always stored")
        self.parts = parts_folder(self.path)
        self._lock = self._take_lock()
        try:
            stamp = self.parts / "provenance.json"
            if self.parts.exists():
                same = stamp.exists() and stamp.read_text() == _provenance_text(self.provenance)
                if not same:  # parts from another model or config: never mixed in
                    shutil.rmtree(self.parts)
            self.parts.mkdir(parents=True, exist_ok=True)
            if not stamp.exists():
                atomic.write_text(stamp, _provenance_text(self.provenance))
            self._done = self._load_done()
        except BaseException:
            self.close()
            raise

    def _take_lock(self) -> int:
        """A record lock (``lockf``: not inherited by forked decode workers) beside the parts
        folder, opened without following a link; a folder another process writes is refused."""
        lock = parts_lock(self.path)
        lock.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StoreError(f"{lock}: is a symbolic link; refusing to use it as a lock") from None
            raise _disk_error(exc, lock) from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                raise StoreError(f"{self.parts}: another process is writing this store (it holds {lock}); "
                                 "run again when it has finished") from None
            raise
        return fd

    def close(self) -> None:
        """Release the parts folder (also done by ``finish``)."""
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1

    def _part_files(self) -> list[Path]:
        return sorted(self.parts.glob("part-*.npz"))

    def _read_part(self, part: Path) -> dict[str, np.ndarray] | None:
        """A part's arrays, all read (so every member's CRC is checked), or None if any is bad."""
        try:
            with np.load(part, allow_pickle=False) as data:
                arrays = {name: data[name] for name in self._array_names()}
            json.loads(str(arrays["skipped"]))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            log.warning("%s: unreadable part file (%s); discarded, its tracks are embedded again", part, exc)
            return None
        n, total = len(arrays["ids"]), int(arrays["counts"].sum())
        layers = [_part_arrays(layer) for layer in (OUT, *self.layers)]
        if not (len(arrays["split"]) == len(arrays["targets"]) == len(arrays["counts"]) == n
                and len(arrays["offsets"]) == total
                and all(len(arrays[pooled]) == n and len(arrays[windows]) == total
                        and arrays[windows].dtype == np.dtype(self.dtype) for pooled, windows in layers)):
            log.warning("%s: part file with inconsistent arrays; discarded, its tracks are embedded again", part)
            return None
        return arrays

    def _array_names(self) -> list[str]:
        """What a part file of this writer holds: ``PART_ARRAYS`` and each intermediate layer's."""
        return [*PART_ARRAYS, *(name for layer in self.layers for name in _part_arrays(layer))]

    def _index(self) -> list[_PartIndex]:
        """Every sound part's small arrays; a broken part is deleted (its tracks count as missing)."""
        index = []
        for part in self._part_files():
            arrays = self._read_part(part)
            if arrays is None:
                part.unlink(missing_ok=True)
                continue
            index.append(_PartIndex(part, arrays["ids"], arrays["split"], arrays["targets"], arrays["counts"],
                                    json.loads(str(arrays["skipped"]))))
        return index

    def _load_done(self) -> set[str]:
        done: set[str] = set()
        for part in self._index():
            done.update(str(i) for i in part.ids)
            self._skipped.extend(part.skipped)
        done.update(s["id"] for s in self._skipped)
        return done

    @property
    def done_ids(self) -> set[str]:
        """Tracks already written (or skipped as bad) by an earlier, interrupted run: the parts
        found when this writer started (not updated as it adds: a set that grew with the task)."""
        return set(self._done)

    def add(self, track: TrackEmbedding) -> None:
        self.add_many([track])

    def add_many(self, tracks: list[TrackEmbedding]) -> None:
        """Add tracks, then write a part if ``flush_every`` tracks are waiting. The extractor adds
        one encoder batch at a time, so a part never ends inside a batch: a resumed extraction
        batches its windows exactly as an uninterrupted one would, and gets the same numbers."""
        self._buffer.extend(tracks)
        if len(self._buffer) >= self.flush_every:
            self.flush()

    def skip(self, id: str, path: str, reason: str) -> None:
        """Record a bad track; it is listed in the store's ``skipped`` attribute."""
        self._pending_skips.append({"id": id, "path": path, "reason": reason})

    def flush(self) -> None:
        if not self._buffer and not self._pending_skips:
            return
        parts = self._part_files()
        index = int(parts[-1].stem.split("-")[1]) + 1 if parts else 0  # after a discarded one too
        part = self.parts / f"part-{index:06d}.npz"
        tracks = self._buffer
        layers = {}
        for layer in (OUT, *self.layers):
            windows = [t.windows if layer == OUT else t.layers[layer] for t in tracks]
            pooled_name, windows_name = _part_arrays(layer)
            # pooled from the full-precision windows, whatever dtype they are kept in
            layers[pooled_name] = (np.stack([pool(w, self.pooling) for w in windows]).astype(np.float32)
                                   if tracks else np.zeros((0, 0), np.float32))
            layers[windows_name] = (np.concatenate(windows).astype(self.dtype) if tracks
                                    else np.zeros((0, 0), self.dtype))
        try:
            with atomic.atomic_path(part) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(
                        f,
                        ids=np.array([t.id for t in tracks], dtype=np.str_),
                        split=np.array([t.split for t in tracks], dtype=np.str_),
                        targets=np.stack([t.target for t in tracks]).astype(np.float32)
                        if tracks else np.zeros((0, len(self.label_names)), np.float32),
                        offsets=np.concatenate([t.offsets for t in tracks]).astype(np.float32)
                        if tracks else np.zeros(0, np.float32),
                        counts=np.array([len(t.windows) for t in tracks], dtype=np.int64),
                        skipped=np.array(json.dumps(self._pending_skips)),
                        **layers,
                    )
        except OSError as exc:  # full disk, file-size limit, read-only folder: the parts so far stay
            raise _disk_error(exc, part) from None
        self._skipped.extend(self._pending_skips)
        self._pending_skips.clear()
        self._buffer = []

    def missing(self, order: list[str]) -> list[str]:
        """The ids of ``order`` that no sound part holds, as tracks or as skipped ones (a part
        deleted or damaged since it was written): the extractor embeds them again."""
        self.flush()
        parts = self._index()
        held = np.concatenate([part.ids for part in parts] + [np.array([s["id"] for part in parts for s in part.skipped],
                                                                        dtype=np.str_)])
        wanted = np.asarray(order, dtype=np.str_)
        return [str(id) for id in wanted[~_rows_in_order(held, wanted)[1]]]

    def finish(self, order: list[str] | None = None) -> Path:
        """Stream the parts into the final store (atomically), then remove them.

        ``order``: the task's track ids; the rows follow it, so the store does not depend on which
        parts an interrupted run left behind, and they must be exactly its tracks plus the skipped
        ones (a track embedded twice, e.g. after a discarded part, is stored once). Without it,
        the parts' own order. Only the parts' small index arrays are held for every track.
        """
        self.flush()
        parts = self._index()
        ids_all = np.concatenate([part.ids for part in parts] + [np.array([], dtype=np.str_)])
        skipped = {s["id"]: s for part in parts for s in part.skipped}
        if order is None:
            order = list(dict.fromkeys([str(i) for i in ids_all] + list(skipped)))
        wanted = np.asarray(order, dtype=np.str_)
        rows, stored, extra = _rows_in_order(ids_all, wanted)  # rows: into ids_all, one a track, in task order
        missing = [str(id) for id in wanted[~stored] if str(id) not in skipped]
        if missing:
            raise StoreError(f"{self.path}: {len(missing)} of the task's {len(order)} tracks are in no part file "
                             f"(first: {missing[0]!r}); run again to embed them")
        if not len(rows):
            raise StoreError(f"{self.path}: no track could be embedded (skipped: {len(skipped)})")
        part_of = np.concatenate([np.full(len(part.ids), k) for k, part in enumerate(parts)])[rows]
        row_in_part = np.concatenate([np.arange(len(part.ids)) for part in parts])[rows]
        counts = np.concatenate([part.counts for part in parts]).astype(np.int64)[rows]
        ids = ids_all[rows]
        split = np.concatenate([part.split for part in parts])[rows]
        targets = np.concatenate([part.targets for part in parts]).astype(np.float32)[rows]
        skipped_list = [skipped[str(id)] for id in wanted[~stored] if str(id) in skipped]
        n, total = len(rows), int(counts.sum())
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        dims = self._dims(parts)
        opened: list[h5py.File] = []  # kept alive: a file whose writes failed must not be closed (that crashes)

        def write(tmp: Path) -> None:
            opened.append(h5py.File(tmp, "w"))
            h5 = opened[0]
            h5.create_dataset("targets", data=targets, chunks=True, fletcher32=True)
            h5.create_dataset("ids", data=ids.astype(object), dtype=STRING)
            h5.create_dataset("split", data=split.astype(object), dtype=STRING)
            group = h5.create_group("windows")
            offsets = group.create_dataset("offsets", (total,), np.float32, chunks=True, fletcher32=True)
            group.create_dataset("start", data=starts, chunks=True, fletcher32=True)
            group.create_dataset("count", data=counts, chunks=True, fletcher32=True)
            layers = {}  # {part array: its dataset}, both of every layer
            for layer, (dim, pooled_dim) in dims.items():
                (pooled_name, windows_name), (pooled_path, windows_path) = _part_arrays(layer), layer_datasets(layer)
                layers[pooled_name] = h5.create_dataset(pooled_path, (n, pooled_dim), np.float32, chunks=True,
                                                        fletcher32=True)
                layers[windows_name] = h5.create_dataset(windows_path, (total, dim), self.dtype, chunks=True,
                                                         fletcher32=True)
            for k, part in enumerate(parts):  # one part in memory at a time
                mine = np.flatnonzero(part_of == k)
                if len(mine):
                    self._copy_part(part, row_in_part[mine], mine, starts, layers, offsets)
            h5.attrs["provenance"] = _provenance_text(self.provenance)
            h5.attrs["kind"] = self.kind
            h5.attrs["label_names"] = json.dumps(self.label_names)
            h5.attrs["pooling"] = self.pooling
            h5.attrs["skipped"] = json.dumps(skipped_list)
            h5.attrs["musicrep_version"] = __version__
            h5.attrs["items"] = n
            h5.attrs["checksums"] = json.dumps({"ids": _strings_digest(ids), "split": _strings_digest(split)})
            if self.layers:
                h5.attrs["layers"] = json.dumps([*self.layers, OUT])
            h5.attrs["complete"] = True
            h5.close()

        try:
            with atomic.atomic_path(self.path) as tmp:
                self.assembly_memory = _write_in_child(lambda: write(tmp), self.path, tmp)
        except OSError as exc:  # the rename or fsync: a full disk, a read-only folder
            raise _disk_error(exc, self.path) from None
        if extra:
            log.warning("%s: %d tracks in the parts are not in the task; left out of the store", self.path, extra)
        shutil.rmtree(self.parts)  # ours alone: this writer holds the lock
        self.close()
        return self.path

    def _dims(self, parts: list[_PartIndex]) -> dict[str, tuple[int, int]]:
        """``{layer: (window dim, pooled dim)}``, "out" first."""
        for part in parts:
            if len(part.ids):
                arrays = self._read_part(part.path)
                if arrays is not None:
                    return {layer: (arrays[_part_arrays(layer)[1]].shape[1], arrays[_part_arrays(layer)[0]].shape[1])
                            for layer in (OUT, *self.layers)}
        raise StoreError(f"{self.parts}: part files became unreadable; run again to embed their tracks")

    def _copy_part(self, part: _PartIndex, rows: np.ndarray, destinations: np.ndarray, starts: np.ndarray,
                   layers: dict[str, h5py.Dataset], offsets: h5py.Dataset) -> None:
        """Write a part's ``rows`` to the store's ``destinations``, a run of consecutive rows per
        HDF5 write (a whole part, when nothing was interrupted)."""
        arrays = self._read_part(part.path)
        if arrays is None:  # broken since this writer indexed it: nothing sound to assemble
            part.path.unlink(missing_ok=True)
            raise StoreError(f"{part.path}: part file became unreadable; run again to embed its tracks")
        firsts = np.concatenate([[0], np.cumsum(part.counts)]).astype(np.int64)
        breaks = np.flatnonzero((np.diff(rows) != 1) | (np.diff(destinations) != 1)) + 1
        for run in np.split(np.arange(len(rows)), breaks):
            r0, r1, d0, d1 = rows[run[0]], rows[run[-1]] + 1, destinations[run[0]], destinations[run[-1]] + 1
            w0, w1, at = firsts[r0], firsts[r1], int(starts[d0])
            for layer in (OUT, *self.layers):
                pooled, windows = _part_arrays(layer)
                layers[pooled][d0:d1] = arrays[pooled][r0:r1]
                layers[windows][at:at + w1 - w0] = arrays[windows][w0:w1]
            offsets[at:at + w1 - w0] = arrays["offsets"][w0:w1]


def _rows_in_order(ids: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Where ``ids`` meet ``order``: the indices into ``ids`` of the first occurrence of each id of
    ``order`` that ``ids`` holds, in ``order``'s order; a mask over ``order`` of the ids found; and
    how many entries of ``ids`` are not in ``order`` at all. Sorting, not sets: a few bytes a track."""
    found = np.zeros(len(order), dtype=bool)
    if not len(ids) or not len(order):
        return np.zeros(0, dtype=np.int64), found, len(ids)
    sorter = np.argsort(order, kind="stable")
    position = sorter[np.clip(np.searchsorted(order, ids, sorter=sorter), 0, len(order) - 1)]
    known = np.flatnonzero(order[position] == ids)
    positions, first = np.unique(position[known], return_index=True)  # sorted: the task's order
    found[positions] = True
    return known[first], found, len(ids) - len(known)


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
        #: the stored layers, "out" last (a store written before layers existed holds "out" alone)
        self.layers = _stored_layers(self._h5)

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

    def _layer(self, layer: str) -> tuple[str, str]:
        if layer not in self.layers:
            raise StoreError(f"{self.path}: no layer {layer!r} stored (it holds: {', '.join(self.layers)})")
        return layer_datasets(layer)

    def embeddings(self, split: str | None = None, layer: str = OUT) -> np.ndarray:
        """The pooled track embeddings of ``layer``, of one split or all."""
        return self._h5[self._layer(layer)[0]][self.indices(split)]

    def targets(self, split: str | None = None) -> np.ndarray:
        return self._h5["targets"][self.indices(split)]

    def timeline(self, index: int, layer: str = OUT) -> tuple[np.ndarray, np.ndarray]:
        """One track's window embeddings ``[W, D]`` of ``layer`` and their start times in seconds."""
        start = int(self._h5["windows/start"][index])
        count = int(self._h5["windows/count"][index])
        windows = self._h5[self._layer(layer)[1]]
        return windows[start:start + count], self._h5["windows/offsets"][start:start + count]

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything, as plain arrays (for comparing two stores)."""
        out = {name: self._h5[name][:] for name in _numeric(self._h5)}
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
                for name in [n for n in _numeric(first._h5) if n != "windows/start"]:
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
                h5.attrs["items"] = sum(len(o) for o in opened)
                h5.attrs["checksums"] = json.dumps({
                    "ids": _strings_digest(np.concatenate([o.ids for o in opened])),
                    "split": _strings_digest(np.concatenate([o.splits for o in opened]))})
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


def _damage(h5: h5py.File) -> str | None:
    """Why a finished store's contents cannot be trusted, or None: every numeric dataset read
    chunk by chunk (HDF5 checks each chunk's fletcher32), the strings against their digests, and
    every per-track dataset against the item count."""
    if "checksums" not in h5.attrs or "items" not in h5.attrs:
        return "without checksums (written by an older musicrep)"
    n = int(h5.attrs["items"])
    layers = [layer_datasets(layer)[0] for layer in _stored_layers(h5) if layer != OUT]
    for name in ("embeddings", "targets", "ids", "split", "windows/start", "windows/count", *layers):
        if h5[name].shape[0] != n:
            return f"damaged (/{name} has {h5[name].shape[0]} rows, the store {n} items)"
    for name in _numeric(h5):
        data = h5[name]
        step = max(1, (1 << 22) // max(1, data.dtype.itemsize * int(np.prod(data.shape[1:]))))
        try:
            for at in range(0, data.shape[0], step):
                data[at:at + step]
        except OSError:
            return f"damaged (the checksum of /{name} does not match)"
    digests = json.loads(h5.attrs["checksums"])
    for name in ("ids", "split"):
        if _strings_digest(h5[name].asstr()[:]) != digests.get(name):
            return f"damaged (the checksum of /{name} does not match)"
    return None


def store_status(path: str | Path, provenance: dict[str, Any]) -> str:
    """Whether ``path`` holds a sound finished store made with exactly this provenance: "complete",
    or why not: "missing", "unreadable", "incomplete", "made from other inputs" (weights, audio or
    musicrep version: a store from another *config* is refused earlier, by the pipeline),
    "damaged (...)" (a checksum or the item count does not match) or "without checksums"."""
    path = Path(path)
    if not path.exists():
        return "missing"
    try:
        with h5py.File(path, "r") as h5:
            if not h5.attrs.get("complete", False):
                return "incomplete"
            if h5.attrs.get("provenance") != _provenance_text(provenance):
                return "made from other inputs"
            return _damage(h5) or "complete"
    except (OSError, KeyError, ValueError):  # truncated, overwritten, not HDF5, a dataset missing
        return "unreadable"


def is_complete(path: str | Path, provenance: dict[str, Any]) -> bool:
    """Whether ``path`` holds a finished store made with exactly this provenance."""
    return store_status(path, provenance) == "complete"
