"""A task's view of a store: which stored clip (by content key) is each of its items, with the
task's own labels, splits, kind and label names.

The store holds embeddings only; everything a probe reads about a task comes from the task,
through the view. The pipeline rewrites a task's view from the task on every run, and the view's
``digest`` (of its ids, splits, keys, targets, kind and label names) is part of every probe's
key and is checked when the view is read: a view changed on disk is reported as damaged, never
used. Layout of a view file (HDF5, small)::

    /ids, /split, /keys  [N]     the task's item ids, splits and content keys (skipped items left out)
    /targets             [N, L]  multi-hot labels (classification) or values (regression)
    attributes: format, kind, label_names (JSON), skipped (JSON: {id, path, reason} each),
                store (the store folder, relative to the view's folder),
                provenance (JSON: the store's), digest, complete
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np

from musicrep import atomic
from musicrep.store.layout import FORMAT, provenance_text, strings_digest
from musicrep.tasks import encode_targets

STRING = h5py.string_dtype("utf-8")


def view_digest(ids: Sequence[str], splits: Sequence[str], keys: Sequence[str], targets: np.ndarray, kind: str,
                label_names: Sequence[str]) -> str:
    """What a probe of this view depends on besides the embeddings: one SHA-256."""
    digest = hashlib.sha256(json.dumps({"kind": kind, "label_names": list(label_names)}).encode())
    for values in (ids, splits, keys):
        digest.update(strings_digest(values).encode())
    digest.update(np.ascontiguousarray(targets, dtype="<f4").tobytes())
    digest.update(str(np.shape(targets)).encode())
    return digest.hexdigest()


@dataclass
class TaskView:
    """A task's items as rows over a store: the items whose clip is stored, in the task's order."""

    ids: list[str]
    splits: list[str]
    keys: list[str]
    targets: np.ndarray
    kind: str
    label_names: list[str]
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def digest(self) -> str:
        return view_digest(self.ids, self.splits, self.keys, self.targets, self.kind, self.label_names)

    @classmethod
    def of_task(cls, task: Any, keys: Sequence[str], skipped: dict[str, dict[str, str]]) -> "TaskView":
        """The view of ``task`` whose items have content ``keys``; those whose key the store lists
        in ``skipped`` (bad audio) are left out and named."""
        items, label_names = task.items(), list(task.label_names)
        bad = np.array([key in skipped for key in keys], dtype=bool)
        left_out = [{"id": item.id, "path": str(item.path or ""), "reason": skipped[key]["reason"]}
                    for item, key in zip(items, keys) if key in skipped]
        kept = [item for item, b in zip(items, bad) if not b]
        targets = encode_targets(kept, task.kind, label_names)
        if task.kind == "multiclass":  # class indices as one-hot rows, as stores always kept them
            targets = np.eye(len(label_names), dtype=np.float32)[targets] if len(kept) else np.zeros((0, len(label_names)), np.float32)
        return cls([item.id for item in kept], [item.split for item in kept],
                   [key for key, b in zip(keys, bad) if not b], np.asarray(targets, dtype=np.float32).reshape(len(kept), -1),
                   task.kind, label_names, left_out)

    def write(self, path: Path, store_root: Path, provenance: dict[str, Any]) -> None:
        """Write the view to ``path`` atomically, naming ``store_root`` relative to the view's folder."""
        path = Path(path)
        where = os.path.relpath(Path(store_root).resolve(), path.parent.resolve())  # the run moves as one
        with atomic.atomic_path(path) as tmp:
            with h5py.File(tmp, "w") as h5:
                h5.create_dataset("ids", data=np.array(self.ids, dtype=object), dtype=STRING)
                h5.create_dataset("split", data=np.array(self.splits, dtype=object), dtype=STRING)
                h5.create_dataset("keys", data=np.array(self.keys, dtype=object), dtype=STRING)
                h5.create_dataset("targets", data=self.targets, chunks=True if len(self.targets) else None,
                                  fletcher32=bool(len(self.targets)))
                h5.attrs["format"] = FORMAT
                h5.attrs["kind"] = self.kind
                h5.attrs["label_names"] = json.dumps(self.label_names)
                h5.attrs["skipped"] = json.dumps(self.skipped)
                h5.attrs["store"] = where
                h5.attrs["provenance"] = provenance_text(provenance)
                h5.attrs["digest"] = self.digest
                h5.attrs["complete"] = True
