"""The embedding store: embed a clip once per model configuration, reuse it in every task.

Design
------
**One store per model configuration, keyed by content.** A store is a folder holding the
embeddings of one model configuration (front end, encoder, weights hash, windowing, pooling,
layers, dtype and their algorithm versions: the embed key of ``musicrep.provenance``), and its
rows are keyed by the clip's *content*: the SHA-256 of the file's bytes (``musicrep.content``),
for a ``start``/``end`` item that digest with the segment's bounds (``content.segment_key``:
no decoding is needed to know a key), for a generated item (no file) its task's
``content_key`` (by default the task's type, config and the item itself). So audio two tasks
share is embedded once, and a file whose bytes change under the same name is a new key: it is
embedded again and every probe that used it reruns, because a probe's key holds the view's.

**Tasks are views.** A task's view (``view.py``) maps its items to keys and carries its own
labels, splits, kind and label names; the store carries embeddings only. ``EmbeddingStore``
reads a view with the read API probes and plots always used (``.embeddings(split, layer)``,
``.targets(split)``, ``.ids``, ``.splits``, ``.label_names``, ``.kind``, ``.layers``,
``.skipped``, ``.timeline(i, layer)``, ``.provenance``).

**Layout** (documented for other tools in docs/store.md)::

    STORE/store.json                      {"format": 2, "provenance": {embed key fields}}
    STORE/segments/seg-<n>-<digest>.h5    finished segments: rows by key; a later one wins
    STORE/journal/part-*.npz              the extraction in progress (journal-rank<r>-of-<w>/ per rank)
    STORE/journal.lock                    held by the process writing the journal

One module per job, importing only downward (layout <- journal <- writer; layout <- view <- reader;
shards alone): ``layout`` (names, the store's identity), ``journal`` (atomic part files, the
writer lock, resume), ``writer`` (the forked HDF5 writer that survives a full disk, streaming
assembly of a segment), ``shards`` (torchrun: a journal and a segment per rank, joined by the
reader), ``view`` (a task's view), ``reader`` (``ContentStore``, ``EmbeddingStore``, status).

Reliability kept from the single-file store: part files atomic and CRC-checked, a killed
extraction resumes to the same segment (rows in the asked order, the segment named by its
keys), fletcher32 on every numeric dataset and SHA-256 on the string ones, the writer lock,
streaming assembly (memory flat in the catalog). A store of the older layout (one
``<task>.h5`` per model x task, format 1) is not migrated: it is redone by the next run.
Nothing is garbage-collected yet: rows of changed audio or old weights stay until the store
folder is removed.
"""
from musicrep.store.layout import FORMAT, StoreError, TrackEmbedding, layer_datasets, pool
from musicrep.store.reader import ContentStore, EmbeddingStore, store_status
from musicrep.store.view import TaskView
from musicrep.store.writer import StoreWriter

__all__ = ["FORMAT", "ContentStore", "EmbeddingStore", "StoreError", "StoreWriter", "TaskView", "TrackEmbedding",
           "layer_datasets", "pool", "store_status"]
