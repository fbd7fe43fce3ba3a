"""The writer: a journal's parts streamed into one finished segment, written by a forked process.

libhdf5 cannot close a file whose writes failed (a full disk, a file-size limit): the handle
stays open and the library's exit handler then crashes the process (exit 139, seen on a 2 MB
tmpfs and under RLIMIT_FSIZE). The segment is therefore written by a forked child that ends
with ``os._exit``; a failed write becomes one error naming the file, and the caller lives on.
Assembly streams: one part in memory at a time, into datasets sized from the parts' small
index arrays, so peak memory follows the part size, not the catalog.
"""
from __future__ import annotations

import errno
import gc
import json
import os
import resource
import shutil
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np

from musicrep import atomic
from musicrep.errors import MusicrepError
from musicrep.layers import OUT
from musicrep.store import shards
from musicrep.store.journal import Journal, PartIndex, key_hashes
from musicrep.store.layout import (DISK_ERRNOS, FORMAT, StoreError, TrackEmbedding, claim, disk_error, layer_datasets,
                                   part_arrays, provenance_text, segment_path, segment_sequence, segments_folder,
                                   strings_digest)

STRING = h5py.string_dtype("utf-8")


def _rss_kib(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
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


def write_in_child(write: Callable[[], None], path: Path, tmp: Path) -> int:
    """Run ``write`` (the HDF5 writing) in a forked process; return how many bytes its resident
    memory grew. A failed write is one ``StoreError`` naming ``path``."""
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
    if number in DISK_ERRNOS:
        raise disk_error(OSError(number, os.strerror(number)), path)
    died = f"its writer died: signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else None
    raise StoreError(f"{path}: writing the store failed ({result.get('error') or died or f'exit {status}'}); "
                     "finished work is kept")


def rows_in_order(ids: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Where ``ids`` meet ``order``: the indices into ``ids`` of the first occurrence of each id of
    ``order`` that ``ids`` holds, in ``order``'s order; a mask over ``order`` of the ids found; and
    how many entries of ``ids`` are not in ``order`` at all. Sorting, not sets: a few bytes a clip."""
    found = np.zeros(len(order), dtype=bool)
    if not len(ids) or not len(order):
        return np.zeros(0, dtype=np.int64), found, len(ids)
    sorter = np.argsort(order, kind="stable")
    position = sorter[np.clip(np.searchsorted(order, ids, sorter=sorter), 0, len(order) - 1)]
    known = np.flatnonzero(order[position] == ids)
    positions, first = np.unique(position[known], return_index=True)  # sorted: the order's order
    found[positions] = True
    return known[first], found, len(ids) - len(known)


class StoreWriter:
    """Adds clips, by content key, to the store folder ``root`` of ``provenance``: a journal while
    embedding (``shard``: this rank's own), one new segment when finished."""

    def __init__(self, root: str | Path, provenance: dict[str, Any], *, pooling: str = "mean",
                 flush_every: int = 256, dtype: str = "float32", layers: tuple[str, ...] = (),
                 shard: tuple[int, int] = (0, 1)) -> None:
        self.root, self.provenance, self.pooling = Path(root), provenance, pooling
        self.layers = tuple(layers)
        #: bytes the segment's assembly added to its process's resident memory (flat in the clips)
        self.assembly_memory = 0
        claim(self.root, provenance)
        self.journal = Journal(shards.journal_folder(self.root, *shard), pooling=pooling, dtype=dtype,
                               layers=self.layers, flush_every=flush_every)
        self.dtype = dtype

    @property
    def done_ids(self) -> set[str]:
        """Keys an interrupted run already journaled (embedded or skipped as bad)."""
        return set(self.journal.done)

    def add_many(self, tracks: list[TrackEmbedding]) -> None:
        self.journal.add_many(tracks)

    def add(self, track: TrackEmbedding) -> None:
        self.journal.add_many([track])

    def skip(self, key: str, path: str, reason: str) -> None:
        self.journal.skip(key, path, reason)

    def flush(self) -> None:
        self.journal.flush()

    def close(self) -> None:
        self.journal.close()

    def missing(self, order: list[str]) -> list[str]:
        """The keys of ``order`` that no sound part holds (a part deleted or damaged since it was
        written): the extractor embeds them again."""
        self.flush()
        parts = self.journal.index()
        held = np.concatenate([part.hashes for part in parts] + [key_hashes(s["id"] for part in parts for s in part.skipped)])
        return [order[i] for i in np.flatnonzero(~rows_in_order(held, key_hashes(order))[1])]

    def finish(self, order: list[str]) -> Path | None:
        """Stream the journal into a new segment (atomically), then remove the journal; the
        segment's path, or None when ``order`` is empty. ``order``: the keys this writer was to
        add; the rows follow it, so the segment does not depend on where a run was interrupted."""
        self.flush()
        if not order:
            self.journal.remove()
            return None
        parts = self.journal.index()
        ids_all = np.concatenate([part.hashes for part in parts] + [np.zeros(0, np.uint64)])
        skipped = {s["id"]: s for part in parts for s in part.skipped}
        rows, stored, _ = rows_in_order(ids_all, key_hashes(order))
        missing = [order[i] for i in np.flatnonzero(~stored) if order[i] not in skipped]
        if missing:
            raise StoreError(f"{self.journal.folder}: {len(missing)} of {len(order)} clips are in no part file "
                             f"(first: {missing[0]!r}); run again to embed them")
        part_of = np.concatenate([np.full(len(part.hashes), k) for k, part in enumerate(parts)] + [np.zeros(0, int)])[rows]
        row_in_part = np.concatenate([np.arange(len(part.hashes)) for part in parts] + [np.zeros(0, int)])[rows]
        counts = np.concatenate([part.counts for part in parts] + [np.zeros(0, np.int64)]).astype(np.int64)[rows]
        keys = [order[i] for i in np.flatnonzero(stored)]  # the segment's rows, in the asked order
        skipped_list = [skipped[order[i]] for i in np.flatnonzero(~stored) if order[i] in skipped]
        n, total = len(rows), int(counts.sum())
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if n else np.zeros(0, np.int64)
        dims = self._dims(parts) if n else {layer: (0, 0) for layer in (OUT, *self.layers)}
        existing = sorted(segments_folder(self.root).glob("seg-*.h5"))
        sequence = max((segment_sequence(p) for p in existing), default=0) + 1
        path = segment_path(self.root, sequence, strings_digest(order))
        checked = {"chunks": True, "fletcher32": True} if n and total else {}
        opened: list[h5py.File] = []  # kept alive: a file whose writes failed must not be closed (that crashes)

        def write(tmp: Path) -> None:
            opened.append(h5py.File(tmp, "w"))
            h5 = opened[0]
            h5.create_dataset("keys", data=np.array(keys, dtype=object), dtype=STRING)
            group = h5.create_group("windows")
            offsets = group.create_dataset("offsets", (total,), np.float32, **checked)
            group.create_dataset("start", data=starts, **checked)
            group.create_dataset("count", data=counts, **checked)
            layers = {}  # {part array: its dataset}, both of every layer
            for layer, (dim, pooled_dim) in dims.items():
                (pooled_name, windows_name), (pooled_path, windows_path) = part_arrays(layer), layer_datasets(layer)
                layers[pooled_name] = h5.create_dataset(pooled_path, (n, pooled_dim), np.float32, **checked)
                layers[windows_name] = h5.create_dataset(windows_path, (total, dim), self.dtype, **checked)
            for k, part in enumerate(parts):  # one part in memory at a time
                mine = np.flatnonzero(part_of == k)
                if len(mine):
                    self._copy_part(part, row_in_part[mine], mine, starts, layers, offsets, [keys[d] for d in mine])
            h5.attrs["format"] = FORMAT
            h5.attrs["provenance"] = provenance_text(self.provenance)
            h5.attrs["pooling"] = self.pooling
            h5.attrs["skipped"] = json.dumps(skipped_list)
            h5.attrs["items"] = n
            h5.attrs["checksums"] = json.dumps({"keys": strings_digest(keys)})
            h5.attrs["layers"] = json.dumps([*self.layers, OUT])
            h5.attrs["complete"] = True
            h5.close()

        try:
            with atomic.atomic_path(path) as tmp:
                self.assembly_memory = write_in_child(lambda: write(tmp), path, tmp)
        except OSError as exc:  # the rename or fsync: a full disk, a read-only folder
            raise disk_error(exc, path) from None
        self.journal.remove()
        self.close()
        return path

    def _dims(self, parts: list[PartIndex]) -> dict[str, tuple[int, int]]:
        """``{layer: (window dim, pooled dim)}``, "out" first."""
        for part in parts:
            if len(part.hashes):
                arrays = self.journal.read_part(part.path)
                if arrays is not None:
                    return {layer: (arrays[part_arrays(layer)[1]].shape[1], arrays[part_arrays(layer)[0]].shape[1])
                            for layer in (OUT, *self.layers)}
        raise StoreError(f"{self.journal.folder}: part files became unreadable; run again to embed their clips")

    def _copy_part(self, part: PartIndex, rows: np.ndarray, destinations: np.ndarray, starts: np.ndarray,
                   layers: dict[str, h5py.Dataset], offsets: h5py.Dataset, expected: list[str]) -> None:
        """Write a part's ``rows`` to the segment's ``destinations``, a run of consecutive rows per
        HDF5 write (a whole part, when nothing was interrupted)."""
        arrays = self.journal.read_part(part.path)
        if arrays is None:  # broken since this writer indexed it: nothing sound to assemble
            part.path.unlink(missing_ok=True)
            raise StoreError(f"{part.path}: part file became unreadable; run again to embed its clips")
        if [k.decode() for k in arrays["ids"][rows]] != expected:  # two keys' 64-bit hashes collided
            raise StoreError(f"{part.path}: its clips do not match the keys planned for them; remove "
                             f"{self.journal.folder} and run again")
        firsts = np.concatenate([[0], np.cumsum(part.counts)]).astype(np.int64)
        breaks = np.flatnonzero((np.diff(rows) != 1) | (np.diff(destinations) != 1)) + 1
        for run in np.split(np.arange(len(rows)), breaks):
            r0, r1, d0, d1 = rows[run[0]], rows[run[-1]] + 1, destinations[run[0]], destinations[run[-1]] + 1
            w0, w1, at = firsts[r0], firsts[r1], int(starts[d0])
            for layer in (OUT, *self.layers):
                pooled, windows = part_arrays(layer)
                layers[pooled][d0:d1] = arrays[pooled][r0:r1]
                layers[windows][at:at + w1 - w0] = arrays[windows][w0:w1]
            offsets[at:at + w1 - w0] = arrays["offsets"][w0:w1]
