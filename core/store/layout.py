"""Where things are in a content-addressed store folder, and what its HDF5 files hold.

The store package's modules (journal, writer, shards, reader, view) ask this one for names;
nothing here does I/O beyond reading and writing ``store.json``.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from musicrep import atomic
from musicrep.errors import MusicrepError
from musicrep.layers import OUT

#: the on-disk format; a store or view of another (older) format is redone, never read
FORMAT = 2
WINDOW_DTYPES = ("float32", "float16")
#: the numeric datasets of a segment, each checked by fletcher32 when read
NUMERIC = ("embeddings", "windows/embeddings", "windows/offsets", "windows/start", "windows/count")
#: a part file's arrays (besides each intermediate layer's)
PART_ARRAYS = ("ids", "windows", "pooled", "offsets", "counts", "skipped")


class StoreError(MusicrepError):
    """A store that is incomplete, from another model, or unreadable."""


def store_json(root: Path) -> Path:
    """The store's identity: its provenance (the embed key's fields) and format."""
    return root / "store.json"


#: the content index ``musicrep embed`` keeps in a store folder (``musicrep.content``), so a rerun
#: over an unchanged catalog stats its files instead of reading them again
CONTENT_INDEX = "content-index"


def content_index_path(root: Path) -> Path:
    return root / CONTENT_INDEX


def segments_folder(root: Path) -> Path:
    return root / "segments"


def segment_path(root: Path, sequence: int, keys_digest: str) -> Path:
    """A finished segment: numbered (a later one wins where two hold a key: ``--force embed``)
    and named by the digest of the keys it holds, so a resumed extraction writes the same name."""
    return segments_folder(root) / f"seg-{sequence:06d}-{keys_digest[:16]}.h5"


def segment_sequence(path: Path) -> int:
    return int(path.stem.split("-")[1])


def provenance_text(provenance: dict[str, Any]) -> str:
    return json.dumps(provenance, sort_keys=True, default=str)


def layer_datasets(layer: str) -> tuple[str, str]:
    """The datasets of one layer: its pooled track embeddings and its window embeddings."""
    return ("embeddings", "windows/embeddings") if layer == OUT else (f"layers/{layer}/embeddings",
                                                                      f"layers/{layer}/windows")


def part_arrays(layer: str) -> tuple[str, str]:
    """A layer's arrays in a part file (pooled, windows)."""
    return ("pooled", "windows") if layer == OUT else (f"layer-{layer}-pooled", f"layer-{layer}-windows")


def strings_digest(values: Any) -> str:
    """SHA-256 of a string dataset's values (HDF5 checksums cannot cover variable-length strings)."""
    digest = hashlib.sha256()
    for value in values:
        digest.update(str(value).encode("utf-8") + b"\0")
    return digest.hexdigest()


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
    """One embedded clip, by its content key (``id``)."""

    id: str
    windows: np.ndarray       # [W, D]
    offsets: np.ndarray       # [W] seconds
    #: the intermediate layers' window embeddings, ``{layer: [W, D_layer]}``
    layers: dict[str, np.ndarray] = field(default_factory=dict)


def read_identity(root: Path) -> dict[str, Any] | None:
    """The provenance recorded in ``root/store.json``; None when there is none. A store.json that
    is not ours (unreadable, another format) is an error naming it."""
    path = store_json(root)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: unreadable store identity ({type(exc).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("provenance"), dict):
        raise StoreError(f"{path}: not a musicrep store of format {FORMAT}")
    return data["provenance"]


def claim(root: Path, provenance: dict[str, Any]) -> None:
    """Make ``root`` the store of ``provenance`` (written once, atomically); a folder that is
    another configuration's store is refused: one store holds one configuration's embeddings."""
    found = read_identity(root)
    if found is None:
        ours = ("store.json", "segments")  # and journals with their locks: ranks start them at once
        if root.exists() and any(p.name not in ours and not p.name.startswith(("journal", ".store.json.", CONTENT_INDEX))
                                 for p in root.iterdir()):
            raise StoreError(f"{root}: not empty and not a musicrep store; refusing to write there")
        atomic.write_json(store_json(root), {"format": FORMAT, "provenance": provenance})
    elif provenance_text(found) != provenance_text(provenance):
        raise StoreError(f"{root}: a store of another configuration (store.json); one store holds one "
                         "model configuration's embeddings")


def disk_error(exc: OSError, path: Path) -> StoreError:
    """A full disk or a file-size limit as one line naming the file (HDF5's own report is a chain
    of library tracebacks without the path)."""
    reason = exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc))
    return StoreError(f"{reason}: {path}; finished work is kept")


#: OS errors that mean the disk or a limit stopped a write
DISK_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES)
