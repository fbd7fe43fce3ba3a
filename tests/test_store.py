"""The embedding store: resumable extraction, provenance checks, lazy reads."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from musicrep.embed import extract
from musicrep.model import Embedder
from musicrep.plugins.encoders import FCN
from musicrep.store import EmbeddingStore, StoreError, StoreWriter, TrackEmbedding, is_complete
from pipeline_fakes import FrameFrontend, ToneTask


class Interrupted(Exception):
    pass


class FlakyTask(ToneTask):
    """Raises (as a kill would stop the process) after ``fail_after`` decodes."""

    def __init__(self, config: ToneTask.Config, fail_after: int) -> None:
        super().__init__(config)
        self.calls, self.fail_after = 0, fail_after

    def audio(self, item, sample_rate):
        self.calls += 1
        if self.calls > self.fail_after:
            raise Interrupted
        return super().audio(item, sample_rate)


def make_embedder(seed: int) -> Embedder:
    torch.manual_seed(seed)
    return Embedder(FrameFrontend(FrameFrontend.Config()), FCN(FCN.Config(channels=[4, 8], dim=12)),
                    window=0.5, hop=0.25)


def test_interrupted_extraction_resumes_to_the_same_store(tmp_path: Path) -> None:
    seed = int(torch.randint(0, 2**31 - 1, ()))
    config = ToneTask.Config(per_class=5, seconds=float(np.random.default_rng(seed).uniform(0.6, 2.0)))
    provenance = {"model": "m", "seed": seed}
    whole = tmp_path / "whole.h5"
    extract(make_embedder(seed), ToneTask(config), whole, provenance, batch_size=4, progress=False)

    resumed = tmp_path / "resumed.h5"
    stop_after = int(np.random.default_rng(seed).integers(8, 14))  # past the first batches, before the end
    with pytest.raises(Interrupted):
        extract(make_embedder(seed), FlakyTask(config, stop_after), resumed, provenance, batch_size=4,
                progress=False, flush_every=2)
    assert not resumed.exists()  # nothing under the store's name until it is complete
    parts = resumed.with_name("resumed.h5.parts")
    kept = len(StoreWriter(resumed, provenance, kind="multiclass", label_names=ToneTask.label_names).done_ids)
    assert 0 < kept <= stop_after
    summary = extract(make_embedder(seed), ToneTask(config), resumed, provenance, batch_size=4, progress=False)
    assert summary.resumed_tracks == kept and summary.tracks == 15 - kept
    assert not parts.exists()
    with EmbeddingStore(whole) as a, EmbeddingStore(resumed) as b:
        first, second = a.arrays(), b.arrays()
    for key in first:
        if first[key].dtype.kind == "f":
            np.testing.assert_allclose(first[key], second[key], rtol=1e-5, atol=1e-6, err_msg=key)
        else:
            np.testing.assert_array_equal(first[key], second[key], err_msg=key)


def test_parts_from_another_provenance_are_discarded(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    writer = StoreWriter(path, {"model": "a"}, kind="multiclass", label_names=["x", "y"], flush_every=1)
    rng = np.random.default_rng()
    writer.add(TrackEmbedding("t0", "train", np.array([1, 0], np.float32), rng.standard_normal((3, 4)),
                              np.arange(3, dtype=np.float32)))
    assert StoreWriter(path, {"model": "a"}, kind="multiclass", label_names=["x", "y"]).done_ids == {"t0"}
    assert StoreWriter(path, {"model": "b"}, kind="multiclass", label_names=["x", "y"]).done_ids == set()


def test_is_complete_checks_provenance_and_reader_refuses_garbage(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    writer = StoreWriter(path, {"model": "a"}, kind="regression", label_names=["v"])
    rng = np.random.default_rng()
    windows = rng.standard_normal((2, 3)).astype(np.float32)
    writer.add(TrackEmbedding("t0", "test", np.array([0.5], np.float32), windows, np.zeros(2, np.float32)))
    writer.finish()
    assert is_complete(path, {"model": "a"}) and not is_complete(path, {"model": "b"})
    with EmbeddingStore(path) as store:
        np.testing.assert_allclose(store.embeddings("test")[0], windows.mean(axis=0), rtol=1e-6)
        assert store.embeddings("train").shape == (0, 3)
    bogus = tmp_path / "bogus.h5"
    bogus.write_bytes(b"not hdf5")
    with pytest.raises(StoreError, match="bogus.h5"):
        EmbeddingStore(bogus)


def test_two_ranks_write_shards_joined_by_a_virtual_dataset(tmp_path: Path) -> None:
    import socket

    import torch.multiprocessing as mp
    from ddp_worker import embed_rank

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    seed = int(torch.randint(0, 10_000, ()))
    mp.spawn(embed_rank, args=(2, port, str(tmp_path / "ranks"), seed), nprocs=2, join=True)
    single = tmp_path / "single.h5"
    extract(make_embedder(seed), ToneTask(ToneTask.Config(per_class=5, seconds=1.0)), single, {"seed": seed},
            batch_size=4, progress=False)
    moved = tmp_path / "moved"
    (tmp_path / "ranks").rename(moved)  # the joined store names its shards relative to itself
    with EmbeddingStore(moved / "store.h5") as joined, EmbeddingStore(single) as one:
        assert sorted(joined.ids) == sorted(one.ids) and len(joined) == 15
        order = {track: i for i, track in enumerate(one.ids)}
        for i, track in enumerate(joined.ids):
            j = order[track]
            np.testing.assert_allclose(joined.embeddings()[i], one.embeddings()[j], rtol=1e-5, atol=1e-6)
            a, b = joined.timeline(i), one.timeline(j)
            np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(a[1], b[1])
            assert joined.splits[i] == one.splits[j]
