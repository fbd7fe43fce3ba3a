"""``musicrep embed``: embed a catalog (no task, no labels) into a store folder, resumably.

A catalog is a folder tree of audio, a manifest with one path per line, or a CSV with a
``path`` column (paths relative to the manifest). Each file is keyed by its content
(``musicrep.content``), so a file already in the store is not embedded again, whatever its
name; a killed run resumes from its journal; bad files are skipped and named. The store's key
is the one a pipeline computes for ``[models.x] load = MODEL`` with the same ``[embed]``
settings, so a pipeline finds what this command embedded.
"""
from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musicrep.errors import MusicrepError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


@dataclass(frozen=True)
class CatalogItem:
    id: str
    path: str


class Catalog:
    """The files of a catalog, each decoded whole (``audio``), for ``embed_clips``."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.items = [CatalogItem(str(p), str(p)) for p in read_catalog(source)]

    def audio(self, item: CatalogItem, sample_rate: int) -> np.ndarray:
        from musicrep.audio import load

        return load(item.path, sample_rate)


def read_catalog(source: Path) -> list[Path]:
    """The audio files a catalog names, in a stable order (a folder: sorted; a list: as listed)."""
    if source.is_dir():
        return sorted(p for p in source.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not source.is_file():
        raise MusicrepError(f"{source}: no such folder or manifest")
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MusicrepError(f"{source}: cannot read the manifest ({type(exc).__name__})") from None
    if source.suffix.lower() == ".csv":
        rows = csv.DictReader(text.splitlines())
        if "path" not in (rows.fieldnames or []):
            raise MusicrepError(f"{source}: a CSV catalog needs a 'path' column")
        names = [row["path"] for row in rows if row.get("path")]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return [(source.parent / name) for name in names]


def embed_catalog(model: str, store: Path, source: Path, *, window: float | None = None, hop: float | None = None,
                  device: str = "cpu", num_workers: int | None = None, checkpoint_every: int = 128,
                  progress: bool = True, seed: int = 0) -> dict[str, Any]:
    """Embed every file of ``source`` the store at ``store`` lacks, with the ready model
    ``model`` (a name, a run, a checkpoint); a summary. ``seed`` seeds a ready model that has
    no weights (its random initialisation), so two calls make the same store."""
    import torch

    from musicrep.content import ContentIndex
    from musicrep.embed import embed_clips, unreadable_key
    from musicrep.hashing import state_hash
    from musicrep.load import load_model
    from musicrep.pipeline.spec import EmbedSection
    from musicrep.provenance import EmbedKey, algorithm_versions, loaded_model

    settings = EmbedSection()
    window = settings.window if window is None else window
    hop = settings.hop if hop is None else hop
    torch.manual_seed(seed)
    embedder = load_model(model, window=window, hop=hop).embedder
    key = EmbedKey(loaded_model(model, None), state_hash(embedder.state_dict()), window, hop,
                   algorithms=algorithm_versions(frontend=embedder.frontend, encoder=embedder.encoder,
                                                 embedder=embedder))
    catalog = Catalog(source)
    index, keys = ContentIndex(), []
    for item in catalog.items:
        try:
            keys.append(index.digest(item.path))
        except OSError:  # named as bad audio when it is decoded
            keys.append(unreadable_key(item.path))
    summary = embed_clips(embedder, catalog, catalog.items, keys, store, key.fields(), device=device,
                          num_workers=num_workers, flush_every=checkpoint_every, progress=progress,
                          desc=f"embed {source.name}")
    for bad in summary.bad_files:
        print(f"musicrep: skipped {bad['path']}: {bad['reason']}", file=sys.stderr)
    return {"files": len(catalog.items), "embedded": summary.tracks, "resumed": summary.resumed_tracks,
            "skipped": summary.skipped, "key": key.key}
