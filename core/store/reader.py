"""Reading stores: ``ContentStore`` (a store folder: embeddings by content key, for any tool) and
``EmbeddingStore`` (a task's view over one: what probes and plots read).

Everything read from disk is checked before it is used, and anything wrong with it (a file
that is not HDF5, a missing dataset, an attribute of the wrong type, a truncated file) is one
``StoreError`` naming the file: stores come from other people too.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from musicrep.layers import OUT
from musicrep.store.layout import (FORMAT, NUMERIC, StoreError, layer_datasets, provenance_text, read_identity,
                                   segments_folder, strings_digest)
from musicrep.store.view import view_digest


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Whatever goes wrong reading ``path`` as one ``StoreError`` naming it."""
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - h5py, json and numpy raise many kinds on bad files
        raise StoreError(f"{path}: cannot open embedding store ({type(exc).__name__})") from None


def _attr(h5: h5py.File, name: str, kind: type) -> Any:
    value = h5.attrs.get(name)
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if kind is int and isinstance(value, np.integer):
        value = int(value)
    if kind is bool and isinstance(value, np.bool_):
        value = bool(value)
    if not isinstance(value, kind):
        raise StoreError(f"{h5.filename}: attribute {name!r} missing or not a {kind.__name__}")
    return value


def _json_attr(h5: h5py.File, name: str, kind: type) -> Any:
    try:
        value = json.loads(_attr(h5, name, str))
    except ValueError:
        raise StoreError(f"{h5.filename}: attribute {name!r} is not JSON") from None
    if not isinstance(value, kind):
        raise StoreError(f"{h5.filename}: attribute {name!r} is not a JSON {kind.__name__}")
    return value


def _records(h5: h5py.File, name: str) -> list[dict[str, str]]:
    records = _json_attr(h5, name, list)
    if not all(isinstance(r, dict) and all(isinstance(r.get(k), str) for k in ("id", "path", "reason"))
               for r in records):
        raise StoreError(f"{h5.filename}: attribute {name!r} is not a list of {{id, path, reason}}")
    return records


def _strings(h5: h5py.File, name: str) -> np.ndarray:
    data = h5[name]
    if not isinstance(data, h5py.Dataset) or data.ndim != 1 or not h5py.check_string_dtype(data.dtype):
        raise StoreError(f"{h5.filename}: /{name} is not a list of strings")
    return data.asstr()[:]


class _Segment:
    """One finished segment file, opened and checked."""

    def __init__(self, path: Path, provenance: dict[str, Any]) -> None:
        self.path = path
        with _reading(path):
            self.h5 = h5py.File(path, "r")
            try:
                if not _attr(self.h5, "complete", bool) or _attr(self.h5, "format", int) != FORMAT:
                    raise StoreError(f"{path}: segment is incomplete or of another format")
                if _attr(self.h5, "provenance", str) != provenance_text(provenance):
                    raise StoreError(f"{path}: segment made with another provenance than its store")
                self.items = _attr(self.h5, "items", int)
                self.keys = _strings(self.h5, "keys")
                self.skipped = _records(self.h5, "skipped")
                self.layers = [str(x) for x in _json_attr(self.h5, "layers", list)]
                self.pooling = _attr(self.h5, "pooling", str)
                if len(self.keys) != self.items or not self.layers or self.layers[-1] != OUT:
                    raise StoreError(f"{path}: damaged (/keys has {len(self.keys)} rows, the segment {self.items})")
                if strings_digest(self.keys) != _json_attr(self.h5, "checksums", dict).get("keys"):
                    raise StoreError(f"{path}: damaged (the checksum of /keys does not match)")
                for layer in self.layers:
                    for name in layer_datasets(layer):
                        if not isinstance(self.h5.get(name), h5py.Dataset) or self.h5[name].ndim != 2:
                            raise StoreError(f"{path}: dataset /{name} missing or not 2-D")
            except BaseException:
                self.h5.close()
                raise

    def numeric(self) -> list[str]:
        return [*NUMERIC, *(name for layer in self.layers if layer != OUT for name in layer_datasets(layer))]

    def damage(self) -> str | None:
        """Why this segment's contents cannot be trusted, or None: every numeric dataset read
        chunk by chunk (HDF5 checks each chunk's fletcher32), the keys against their digest,
        every per-clip dataset against the item count."""
        h5, n = self.h5, self.items
        with _reading(self.path):
            for name in ("embeddings", "windows/start", "windows/count",
                         *(layer_datasets(layer)[0] for layer in self.layers if layer != OUT)):
                if h5[name].shape[0] != n:
                    return f"damaged (/{name} has {h5[name].shape[0]} rows, the store {n} items)"
            for name in self.numeric():
                data = h5[name]
                step = max(1, (1 << 22) // max(1, data.dtype.itemsize * int(np.prod(data.shape[1:]))))
                try:
                    for at in range(0, data.shape[0], step):
                        data[at:at + step]
                except OSError:
                    return f"damaged (the checksum of /{name} does not match)"
            if strings_digest(self.keys) != _json_attr(h5, "checksums", dict).get("keys"):
                return "damaged (the checksum of /keys does not match)"
            counts, starts = h5["windows/count"][:], h5["windows/start"][:]
            total = h5["windows/offsets"].shape[0]
            if len(counts) and (counts.min() < 1 or starts.min() < 0 or int((starts + counts).max()) > total):
                return "damaged (/windows/start and /windows/count point outside /windows)"
        return None


class ContentStore:
    """A store folder: one model configuration's embeddings, by content key, over its segments
    (a later segment wins where two hold a key). The small reader API for other tools::

        with ContentStore(STORE_DIR) as store:
            store.embeddings(["<sha256>", ...])          # [N, D] pooled, float32
            store.lookup("audio/a.wav")                  # by path: the file's content key's row
            for keys, x in store.chunks(1024): ...       # everything, in chunks
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        provenance = read_identity(self.root)
        if provenance is None:
            raise StoreError(f"{self.root}: no embedding store here (no store.json)")
        self.provenance: dict[str, Any] = provenance
        self.segments: list[_Segment] = []
        #: ``(segment, why)`` of the segments that could not be opened: left out of the index
        self.broken: list[tuple[Path, str]] = []
        try:
            for path in sorted(segments_folder(self.root).glob("seg-*.h5")):
                try:
                    self.segments.append(_Segment(path, provenance))
                except StoreError as exc:
                    why = str(exc).split(": ", 1)[-1]
                    self.broken.append((path, why if why.startswith("damaged") else f"damaged ({why})"))
        except BaseException:
            self.close()
            raise
        # the index: every key once (a later segment wins), sorted, with its segment and row;
        # arrays of references, not a dict: a few dozen bytes a clip beyond the keys themselves
        keys = np.concatenate([s.keys for s in self.segments] + [np.zeros(0, object)])
        segment_of = np.concatenate([np.full(len(s.keys), i) for i, s in enumerate(self.segments)]
                                    + [np.zeros(0, np.int64)])
        rows = np.concatenate([np.arange(len(s.keys)) for s in self.segments] + [np.zeros(0, np.int64)])
        latest = np.lexsort((-segment_of, keys)) if len(keys) else np.zeros(0, np.int64)
        keys, segment_of, rows = keys[latest], segment_of[latest], rows[latest]
        first = np.ones(len(keys), bool)
        first[1:] = keys[1:] != keys[:-1]
        self._keys, self._segment_of, self._rows = keys[first], segment_of[first], rows[first]
        self.skipped: dict[str, dict[str, str]] = {}
        for segment in self.segments:
            self.skipped.update((r["id"], r) for r in segment.skipped)
        for key in [k for k in self.skipped if self.contains([k])[0]]:
            del self.skipped[key]
        layers = {tuple(s.layers) for s in self.segments}
        if len(layers) > 1:
            self.close()
            raise StoreError(f"{self.root}: segments holding different layers")
        self.layers: list[str] = list(layers.pop()) if layers else [OUT]

    def __enter__(self) -> "ContentStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for segment in self.segments:
            segment.h5.close()

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: str) -> bool:
        return bool(self.contains([key])[0])

    @property
    def keys(self) -> list[str]:
        return [str(k) for k in self._keys]

    def _positions(self, keys: Any) -> tuple[np.ndarray, np.ndarray]:
        """Where each key would be in the sorted index, and whether it is there."""
        wanted = np.asarray(list(keys), dtype=object)
        if not len(self._keys) or not len(wanted):
            return np.zeros(len(wanted), np.int64), np.zeros(len(wanted), bool)
        at = np.clip(np.searchsorted(self._keys, wanted), 0, len(self._keys) - 1)
        return at, self._keys[at] == wanted

    def contains(self, keys: Any) -> np.ndarray:
        """Whether the store holds each key's embedding (a boolean array)."""
        return self._positions(keys)[1]

    def known(self, keys: Any) -> np.ndarray:
        """Whether the store holds each key, embedded or recorded as bad audio (a boolean array)."""
        keys = list(keys)
        return self.contains(keys) | np.array([k in self.skipped for k in keys], dtype=bool)

    def damage(self) -> list[tuple[Path, str]]:
        """``(segment, why)`` of every damaged segment (every byte read: as costly as the store is big)."""
        return self.broken + [(s.path, why) for s in self.segments if (why := s.damage()) is not None]

    def _layer(self, layer: str) -> tuple[str, str]:
        if layer not in self.layers:
            raise StoreError(f"{self.root}: no layer {layer!r} stored (it holds: {', '.join(self.layers)})")
        return layer_datasets(layer)

    def locate(self, keys: Any) -> tuple[np.ndarray, np.ndarray]:
        """(segment, row) of each key; a key the store does not hold is an error naming it."""
        keys = list(keys)
        at, found = self._positions(keys)
        if not found.all():
            missing = np.flatnonzero(~found)
            raise StoreError(f"{self.root}: {len(missing)} clips are not in the store (first: {keys[missing[0]]})")
        return self._segment_of[at].astype(np.int64), self._rows[at].astype(np.int64)

    def gather(self, segment_of: np.ndarray, rows: np.ndarray, layer: str = OUT) -> np.ndarray:
        """The pooled embeddings of ``layer`` at (segment, row) pairs, in their order."""
        name = self._layer(layer)[0]
        dim = next((s.h5[name].shape[1] for s in self.segments if s.items), 0)
        out = np.zeros((len(rows), dim), np.float32)
        with _reading(self.root):
            for s in np.unique(segment_of):
                mine = np.flatnonzero(segment_of == s)
                wanted, inverse = np.unique(rows[mine], return_inverse=True)
                out[mine] = self.segments[int(s)].h5[name][wanted][inverse]
        return out

    def embeddings(self, keys: Any, layer: str = OUT) -> np.ndarray:
        """The pooled embeddings ``[N, D]`` of ``layer`` of these content keys."""
        return self.gather(*self.locate(list(keys)), layer=layer)

    def timeline(self, key: str, layer: str = OUT) -> tuple[np.ndarray, np.ndarray]:
        """One clip's window embeddings ``[W, D]`` of ``layer`` and their start times in seconds."""
        (s,), (row,) = self.locate([key])
        h5 = self.segments[int(s)].h5
        with _reading(self.root):
            start, count = int(h5["windows/start"][row]), int(h5["windows/count"][row])
            return h5[self._layer(layer)[1]][start:start + count], h5["windows/offsets"][start:start + count]

    def lookup(self, path: str | Path, layer: str = OUT) -> np.ndarray:
        """The pooled embedding of the file at ``path`` (by its content, so a renamed copy is found)."""
        from musicrep.content import ContentIndex

        return self.embeddings([ContentIndex().digest(path)], layer=layer)[0]

    def chunks(self, size: int = 1024, layer: str = OUT) -> Iterator[tuple[list[str], np.ndarray]]:
        """Every stored clip as ``(keys, embeddings [n, D])``, ``size`` at a time: memory flat in the store."""
        keys = self.keys
        for at in range(0, len(keys), size):
            chunk = keys[at:at + size]
            yield chunk, self.embeddings(chunk, layer=layer)


class EmbeddingStore:
    """A task's view of a store (``musicrep.store.view``): its rows are the task's items whose
    clips are stored; embeddings come from the store, everything else from the view."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise StoreError(f"{self.path}: cannot open embedding store (no such file)")
        with _reading(self.path):
            with h5py.File(self.path, "r") as h5:
                if _attr(h5, "format", int) != FORMAT if "format" in h5.attrs else True:
                    raise StoreError(f"{self.path}: a store of an older musicrep layout; it is redone by the next run")
                if not _attr(h5, "complete", bool):
                    raise StoreError(f"{self.path}: store is incomplete")
                self.kind = _attr(h5, "kind", str)
                self.label_names = [str(x) for x in _json_attr(h5, "label_names", list)]
                self.skipped = _records(h5, "skipped")
                self.ids, self.splits, self.keys = _strings(h5, "ids"), _strings(h5, "split"), _strings(h5, "keys")
                targets = h5["targets"]
                if not isinstance(targets, h5py.Dataset) or targets.ndim != 2 or targets.shape[0] != len(self.ids):
                    raise StoreError(f"{self.path}: /targets does not match /ids")
                self._targets = np.asarray(targets[:], dtype=np.float32)
                where, recorded = Path(_attr(h5, "store", str)), _attr(h5, "provenance", str)
                self.digest = _attr(h5, "digest", str)
            if not (len(self.ids) == len(self.splits) == len(self.keys)):
                raise StoreError(f"{self.path}: /ids, /split and /keys differ in length")
            if view_digest(self.ids, self.splits, self.keys, self._targets, self.kind, self.label_names) != self.digest:
                raise StoreError(f"{self.path}: damaged (its contents do not match its digest)")
        self.store_root = where if where.is_absolute() else self.path.parent / where
        try:
            self.store = ContentStore(self.store_root)
        except StoreError as exc:
            raise StoreError(f"{self.path}: its store: {exc}") from None
        try:
            if provenance_text(self.store.provenance) != recorded:
                raise StoreError(f"{self.path}: its store {self.store_root} holds another configuration")
            try:
                self._segment_of, self._rows = self.store.locate(self.keys)
            except StoreError:
                if self.store.broken:  # the clips are missing because their segment is damaged: say that
                    path, why = self.store.broken[0]
                    raise StoreError(f"{self.path}: its store's segment {path} is {why}") from None
                raise
        except BaseException:
            self.store.close()
            raise
        self.provenance = self.store.provenance
        #: the stored layers, "out" last
        self.layers = self.store.layers

    def __enter__(self) -> "EmbeddingStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.store.close()

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.embeddings(split=None)[:1].shape[1])

    def indices(self, split: str | None = None) -> np.ndarray:
        return np.arange(len(self.ids)) if split is None else np.flatnonzero(self.splits == split)

    def embeddings(self, split: str | None = None, layer: str = OUT) -> np.ndarray:
        """The pooled embeddings of ``layer``, of one split or all, in the task's order."""
        rows = self.indices(split)
        return self.store.gather(self._segment_of[rows], self._rows[rows], layer=layer)

    def targets(self, split: str | None = None) -> np.ndarray:
        return self._targets[self.indices(split)]

    def timeline(self, index: int, layer: str = OUT) -> tuple[np.ndarray, np.ndarray]:
        """One item's window embeddings ``[W, D]`` of ``layer`` and their start times in seconds."""
        return self.store.timeline(str(self.keys[index]), layer)

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything, as plain arrays (for comparing two stores)."""
        out = {layer: self.embeddings(layer=layer) for layer in self.layers}
        windows = [self.timeline(i, layer) for i in range(len(self)) for layer in self.layers]
        out["windows"] = np.concatenate([w.reshape(-1) for w, _ in windows]) if windows else np.zeros(0)
        out["offsets"] = np.concatenate([o for _, o in windows]) if windows else np.zeros(0)
        out["targets"], out["ids"], out["split"] = self._targets, self.ids, self.splits
        return out


def store_status(path: str | Path, provenance: dict[str, Any] | None = None) -> str:
    """Whether the view at ``path`` is sound over a sound store (of ``provenance``, when given):
    "complete", or why not: "missing", "unreadable", "made from other inputs", "damaged (...)"."""
    path = Path(path)
    if not path.exists():
        return "missing"
    try:
        with EmbeddingStore(path) as view:
            if provenance is not None and provenance_text(view.provenance) != provenance_text(provenance):
                return "made from other inputs"
            damaged = view.store.damage()
            return damaged[0][1] if damaged else "complete"
    except StoreError as exc:
        message = str(exc)
        return message[message.index("damaged"):] if "damaged (" in message else "unreadable"
