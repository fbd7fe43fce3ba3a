"""``musicrep embed``: embed a catalog (no task, no labels) into a store folder, resumably.

A catalog is a folder tree of audio, a manifest with one path per line, or a CSV with a
``path`` column, read by ``musicrep.catalog.read_catalog`` (bounded, one-line errors naming file
and line). Each file is keyed by its content: its digest comes from the store's own content index
(``STORE_DIR/content-index``, ``musicrep.content``), so a rerun over an unchanged catalog stats
the files instead of reading them; a file already in the store is not embedded again, whatever
its name; a killed run resumes from its journal; bad files are skipped and named. The store's key
is the one a pipeline computes for ``[models.x] load = MODEL`` with the same ``[embed]``
settings, so a pipeline finds what this command embedded.

Under ``torchrun`` each rank embeds every world_size-th clip the store lacks into its own journal
and segment (``musicrep.store.shards``), as extraction does; the store reads every rank's segment,
so there is no join step. Rank 0 keys the catalog first; the other ranks then find every digest in
the shared index (a stat each, no read).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CatalogItem:
    id: str
    path: str


class Catalog:
    """The files of a catalog, each decoded whole (``audio``), for ``embed_clips``."""

    def __init__(self, source: Path) -> None:
        from musicrep.catalog import read_catalog

        self.source = source
        self.items = [CatalogItem(entry.path, entry.path) for entry in read_catalog(source)]

    def audio(self, item: CatalogItem, sample_rate: int) -> np.ndarray:
        from musicrep.audio import load

        return load(item.path, sample_rate)


def embed_catalog(model: str, store: Path, source: Path, *, window: float | None = None, hop: float | None = None,
                  device: str = "cpu", num_workers: int | None = None, checkpoint_every: int = 128,
                  progress: bool = True, seed: int = 0) -> dict[str, Any]:
    """Embed every file of ``source`` the store at ``store`` lacks, with the ready model
    ``model`` (a name, a run, a checkpoint); a summary. ``seed`` seeds a ready model that has
    no weights (its random initialisation), so two calls make the same store."""
    import torch

    from musicrep.content import ContentIndex
    from musicrep.distributed import barrier, init_from_env, world
    from musicrep.embed import embed_clips, file_keys
    from musicrep.hashing import state_hash
    from musicrep.load import load_model
    from musicrep.pipeline.spec import EmbedSection
    from musicrep.provenance import EmbedKey, algorithm_versions, loaded_model
    from musicrep.store.layout import claim, content_index_path

    settings = EmbedSection()
    window = settings.window if window is None else window
    hop = settings.hop if hop is None else hop
    torch.manual_seed(seed)
    embedder = load_model(model, window=window, hop=hop).embedder
    key = EmbedKey(loaded_model(model, None), state_hash(embedder.state_dict()), window, hop,
                   algorithms=algorithm_versions(frontend=embedder.frontend, encoder=embedder.encoder,
                                                 embedder=embedder))
    init_from_env(torch.device(device))
    rank, world_size = world()
    catalog = Catalog(source)
    if rank == 0:  # a folder that is no store of this model is refused before the index is made there
        claim(store, key.fields())
    for turn in (True, False):  # rank 0 hashes, then the others look its digests up
        if (rank == 0) == turn:
            with ContentIndex(content_index_path(store)) as index:  # saved (one SQLite commit) on the way out
                keys = file_keys(index, [item.path for item in catalog.items])
        barrier()
    summary = embed_clips(embedder, catalog, catalog.items, keys, store, key.fields(), device=device,
                          num_workers=num_workers, flush_every=checkpoint_every, progress=progress and rank == 0,
                          shard=(rank, world_size), desc=f"embed {source.name}")
    for bad in summary.bad_files:
        print(f"musicrep: skipped {bad['path']}: {bad['reason']}", file=sys.stderr)
    counts = [summary.tracks, summary.resumed_tracks, summary.skipped]
    if world_size > 1:  # every rank's segment is written; the counts are the catalog's, summed over ranks
        totals = torch.tensor(counts, dtype=torch.int64, device=torch.device(device))  # NCCL: on the GPU
        torch.distributed.all_reduce(totals)
        counts = totals.tolist()
    return {"files": len(catalog.items), "embedded": counts[0], "resumed": counts[1], "skipped": counts[2],
            "key": key.key}
