"""Layer-wise embeddings: named encoder layers, from one forward pass, stored side by side and
probed each (``[embed] layers``)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import musicrep
from musicrep.embed import extract
from musicrep.errors import ConfigError
from musicrep.layers import OUT, encode_layers, layer_names, pool_over_time
from musicrep.model import Embedder
from musicrep.pipeline.runner import run_pipeline
from musicrep.registry import Registry
from musicrep.report import collect, render_report, table
from musicrep.embed import content_keys
from musicrep.store import ContentStore, EmbeddingStore, StoreWriter, TrackEmbedding, store_status
from pipeline_fakes import FrameFrontend, ToneTask
from test_pipeline import registry  # noqa: F401 - the fixture: a registry with the fakes
from test_report import write_result
from test_store import FlakyTask, Interrupted, assert_same_arrays

N_MELS = 24


def stage_outputs(name: str, encoder: torch.nn.Module) -> list[list[torch.nn.Module]]:
    """Per named layer, the modules whose outputs are its maps (pathways side by side): read
    from the module tree, not from ``forward_layers``."""
    if name == "sfnfnet":
        return [[encoder.slow.stages[i][-1], encoder.fast.stages[i][-1]] for i in range(len(encoder.laterals))]
    ends = encoder.ends if name == "resnet" else encoder.body.ends
    return [[encoder.body[end - 1]] for end in ends]


ENCODERS = {
    "fcn": {"channels": [4, 8, 16], "dim": 12},
    "band-cnn": {"channels": [4, 8, 16], "freq_pool": [2, 1, 2], "time_pool": [2, 2, 1], "bands": 3, "dim": 12},
    "resnet": {"channels": [4, 8, 16], "blocks": [1, 1, 1], "dim": 12},
    "sfnfnet": {"preset": "tiny"},
}
#: each encoder's frequency cells after each named layer, for 24 input bands
FREQ_CELLS = {"fcn": [12, 6, 3], "band-cnn": [12, 12, 6], "resnet": [24, 12, 6], "sfnfnet": [6, 3, 2, 1]}


@pytest.mark.parametrize("name", list(ENCODERS))
def test_each_named_encoder_gives_its_layers_from_one_forward_pass(name: str) -> None:
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, ())))
    encoder = musicrep.get_component("encoder", name, **ENCODERS[name]).eval()
    names = layer_names(encoder)
    assert names[-1] == OUT and list(names[:-1]) == [f"block{i + 1}" for i in range(len(FREQ_CELLS[name]))]
    features = torch.randn(3, N_MELS, 40)
    seen: dict[int, list[torch.Tensor]] = {}
    stages = stage_outputs(name, encoder)
    for k, modules in enumerate(stages):
        for module in modules:
            module.register_forward_hook(lambda m, i, o, k=k: seen.setdefault(k, []).append(o.detach().clone()))
    first = next(m for m in encoder.modules() if isinstance(m, torch.nn.Conv2d))
    calls = []
    first.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        layers = encode_layers(encoder, features, names)
        assert len(calls) == 1  # every layer from one pass
        expected_out = encoder(features)
    torch.testing.assert_close(layers[OUT], expected_out)
    for k, cells in enumerate(FREQ_CELLS[name]):
        maps = seen[k][:len(stages[k])]                     # this pass's maps (the second pass appends more)
        assert all(m.shape[2] == cells for m in maps)       # frequency kept, not pooled away
        assert layers[f"block{k + 1}"].shape == (3, sum(m.shape[1] for m in maps) * cells)
        torch.testing.assert_close(layers[f"block{k + 1}"], torch.cat([m.mean(dim=-1).flatten(1) for m in maps], 1))


@pytest.mark.parametrize("name", ["fcn", "resnet", "sfnfnet", "band-cnn"])
def test_a_shallow_layer_alone_runs_no_deeper_block(name: str) -> None:
    encoder = musicrep.get_component("encoder", name, **ENCODERS[name]).eval()
    deepest = stage_outputs(name, encoder)[-1][0]
    calls = []
    deepest.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        layers = encode_layers(encoder, torch.randn(2, N_MELS, 40), ["block1"])
    assert list(layers) == ["block1"] and calls == []


def test_pooling_over_time_keeps_channels_by_frequency() -> None:
    x = torch.randn(2, 3, 5, 7)
    pooled = pool_over_time(x)
    assert pooled.shape == (2, 15)
    torch.testing.assert_close(pooled[1, 5:10], x[1, 1].mean(dim=1))  # channel 1, every frequency cell
    slow, fast = x, x[:, :, :2]  # two pathways: the same frequency cells, other frame rates
    torch.testing.assert_close(pool_over_time((slow, fast)), torch.cat([pooled, fast.mean(-1).flatten(1)], 1))
    vector = torch.randn(2, 4)
    assert pool_over_time(vector) is vector


def test_encoders_without_named_layers_offer_only_out() -> None:
    stats = musicrep.get_component("encoder", "mel-stats", n_features=N_MELS)
    assert layer_names(stats) == (OUT,)
    features = torch.randn(2, N_MELS, 10)
    torch.testing.assert_close(encode_layers(stats, features, [OUT])[OUT], stats(features))


# -- the store ------------------------------------------------------------------------------------

def layered_embedder(seed: int) -> Embedder:
    torch.manual_seed(seed)
    encoder = musicrep.get_component("encoder", "fcn", channels=[4, 8], dim=12)
    return Embedder(FrameFrontend(FrameFrontend.Config()), encoder, window=0.5, hop=0.25)


def test_a_store_of_several_layers_resumes_to_the_same_store(tmp_path: Path) -> None:
    seed = int(torch.randint(0, 2**31 - 1, ()))
    config = ToneTask.Config(per_class=5, seconds=float(np.random.default_rng(seed).uniform(0.6, 2.0)))
    provenance, layers = {"model": "m", "seed": seed}, ("block1", "block2", OUT)
    whole = tmp_path / "whole.h5"
    extract(layered_embedder(seed), ToneTask(config), whole, provenance, batch_size=4, progress=False, layers=layers)

    resumed = tmp_path / "resumed.h5"
    stop_after = int(np.random.default_rng(seed).integers(8, 14))
    with pytest.raises(Interrupted):
        extract(layered_embedder(seed), FlakyTask(config, stop_after), resumed, provenance, batch_size=4,
                progress=False, flush_every=2, num_workers=0, layers=layers, keys=content_keys(ToneTask(config)))
    assert not resumed.exists()
    writer = StoreWriter(tmp_path / "resumed.h5.store", provenance, layers=("block1", "block2"))
    kept = writer.done_ids
    writer.close()
    assert 0 < len(kept) <= stop_after
    summary = extract(layered_embedder(seed), ToneTask(config), resumed, provenance, batch_size=4, progress=False,
                      layers=layers)
    assert summary.resumed_tracks == len(kept) and summary.tracks == 15 - len(kept)
    assert store_status(resumed, provenance) == "complete"  # every layer's checksums and row counts
    with EmbeddingStore(whole) as a, EmbeddingStore(resumed) as b:
        assert a.layers == b.layers == ["block1", "block2", OUT]
        first, second = a.arrays(), b.arrays()
        assert {"block1", "block2", OUT} <= set(first)
        # the layers are what the encoder gives, pooled over time then over the windows
        embedder = layered_embedder(seed).eval()
        task = ToneTask(config)
        item = next(i for i in task.items() if i.id == a.ids[4])
        windows, _ = embedder.track_windows(torch.from_numpy(task.audio(item, embedder.sample_rate)))
        with torch.no_grad():
            direct = encode_layers(embedder.encoder, windows, layers)
        for layer in layers:
            timeline, offsets = a.timeline(4, layer=layer)
            np.testing.assert_allclose(timeline, direct[layer].numpy(), rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(a.embeddings(layer=layer)[4], timeline.mean(axis=0), rtol=1e-5, atol=1e-6)
            assert len(offsets) == len(timeline)
        assert a.embeddings(layer="block1").shape == (15, 4 * math.ceil(129 / 2))  # 129 STFT bins, halved
        np.testing.assert_array_equal(a.embeddings(), a.embeddings(layer=OUT))
    assert_same_arrays(first, second)


def test_parts_of_other_layers_are_not_mixed_in(tmp_path: Path) -> None:
    path, rng = tmp_path / "s", np.random.default_rng()
    writer = StoreWriter(path, {"layers": ["block1", "out"]}, layers=("block1",), flush_every=1)
    writer.add(TrackEmbedding("t0", rng.standard_normal((3, 4)), np.arange(3, dtype=np.float32),
                              {"block1": rng.standard_normal((3, 6))}))
    writer.close()
    again = StoreWriter(path, {"layers": ["block1", "out"]}, layers=("block1",))
    assert again.done_ids == {"t0"}
    again.close()
    # a writer of other layers finds the part inconsistent (a layer's arrays missing): embedded again
    other = StoreWriter(path, {"layers": ["block1", "out"]}, layers=("block2",))
    assert other.done_ids == set()
    other.close()


def test_a_store_of_the_embedding_alone_holds_no_layer_group(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    extract(layered_embedder(0), ToneTask(ToneTask.Config(per_class=2, seconds=0.6)), path, {"m": 1},
            progress=False, num_workers=0)
    with EmbeddingStore(path) as store:
        assert store.layers == [OUT]
        assert all("layers" not in segment.h5 for segment in store.store.segments)
        with pytest.raises(musicrep.MusicrepError, match="no layer 'block1' stored"):
            store.embeddings(layer="block1")


def test_segments_of_several_layers_from_two_ranks_read_as_one(tmp_path: Path) -> None:
    rng = np.random.default_rng()
    tracks = {}
    for rank in range(2):
        writer = StoreWriter(tmp_path / "s", {"p": 1}, layers=("block1",), shard=(rank, 2))
        for k in range(3):
            w = int(rng.integers(1, 4))
            track = TrackEmbedding(f"r{rank}t{k}", rng.standard_normal((w, 4)), np.arange(w, dtype=np.float32),
                                   {"block1": rng.standard_normal((w, 6))})
            writer.add(track)
            tracks[track.id] = track
        writer.finish([f"r{rank}t{k}" for k in range(3)])
    with ContentStore(tmp_path / "s") as store:
        assert store.layers == ["block1", OUT] and len(store) == 6 and len(store.segments) == 2
        for key, track in tracks.items():
            np.testing.assert_allclose(store.timeline(key, layer="block1")[0], track.layers["block1"], rtol=1e-6)
            np.testing.assert_allclose(store.embeddings([key], layer="block1")[0],
                                       track.layers["block1"].mean(axis=0), rtol=1e-5, atol=1e-6)


# -- the pipeline ---------------------------------------------------------------------------------

LAYERED = """
[run]
name = "layers"
device = "cpu"

[tasks.tones]
type = "tones"

[models.small]
frontend = {{ type = "frames" }}
encoder = {encoder}

[embed]
window = 0.5
hop = 0.25
layers = {layers}

[probe]
probes = [{{ type = "linear" }}]
"""


def write(tmp_path: Path, encoder: str, layers: str) -> Path:
    path = tmp_path / "pipeline.toml"
    path.write_text(LAYERED.format(encoder=encoder, layers=layers))
    return path


FCN = '{ type = "fcn", channels = [4, 8], dim = 8 }'


@pytest.mark.parametrize("encoder, layers, has", [
    (FCN, '["block3", "out"]', "block1, block2, out"),
    ('{ type = "mel-stats", n_features = 129 }', '["block1"]', "out (its encoder names no intermediate layers)"),
])
def test_an_unknown_layer_is_refused_before_any_work(tmp_path: Path, registry: Registry, encoder: str, layers: str,
                                                      has: str) -> None:
    path = write(tmp_path, encoder, layers)
    with pytest.raises(ConfigError) as caught:
        run_pipeline(path, registry=registry)
    message = str(caught.value)
    assert "[embed] key 'layers'" in message and "model 'small'" in message and f"its layers: {has}" in message
    assert not (tmp_path / "runs").exists()


def test_a_repeated_layer_is_refused(tmp_path: Path, registry: Registry) -> None:
    with pytest.raises(ConfigError, match="repeats a layer"):
        run_pipeline(write(tmp_path, FCN, '["block1", "block1"]'), registry=registry)


def test_the_pipeline_probes_each_layer_and_the_table_names_them(tmp_path: Path, registry: Registry) -> None:
    table = run_pipeline(write(tmp_path, FCN, '["out"]'), registry=registry)
    assert "small" in table and "small/out" not in table  # the embedding alone: named as before layers
    path = write(tmp_path, FCN, '["block1", "out"]')
    table = run_pipeline(path, registry=registry)  # a store of these layers beside the first
    run_dir = tmp_path / "runs" / "layers"
    with EmbeddingStore(run_dir / "embeddings" / "small" / "tones.h5") as store:
        assert store.layers == ["block1", OUT] and store.provenance["layers"] == ["block1", OUT]
    assert len(list((run_dir / "stores").iterdir())) == 2
    for result in (run_dir / "probes" / "small" / "tones" / "linear.json",
                   run_dir / "probes" / "small" / "tones" / "block1" / "linear.json"):
        assert json.loads(result.read_text())["primary"] == "accuracy"
    assert "small/block1" in table and "small/out" in table
    report = render_report(run_dir)
    assert report.header[3:] == ["small/best", "small/block1", "small/out"]
    assert run_pipeline(path, registry=registry, dry_run=True) is None  # the plan reads every layer's key


MIXED = """
[run]
name = "mixed"
device = "cpu"

[tasks.tones]
type = "tones"

[models.small]
frontend = { type = "frames" }
encoder = { type = "fcn", channels = [4, 8], dim = 8 }
layers = LAYERS

[models.stats]
frontend = { type = "frames" }
encoder = { type = "mel-stats", n_features = 129 }

[embed]
window = 0.5
hop = 0.25

[probe]
probes = [{ type = "linear" }]
"""


def test_a_model_chooses_its_own_layers_beside_a_baseline_that_has_none(tmp_path: Path,
                                                                         registry: Registry) -> None:
    path = tmp_path / "mixed.toml"
    path.write_text(MIXED.replace("LAYERS", '["block9", "out"]'))
    with pytest.raises(ConfigError) as caught:
        run_pipeline(path, registry=registry)
    assert "[models.small] key 'layers'" in str(caught.value) and "its layers: block1, block2, out" in str(caught.value)
    path.write_text(MIXED.replace("LAYERS", '["block1", "out"]'))
    table = run_pipeline(path, registry=registry)
    run_dir = tmp_path / "runs" / "mixed"
    with EmbeddingStore(run_dir / "embeddings" / "small" / "tones.h5") as store:
        assert store.layers == ["block1", OUT]
    with EmbeddingStore(run_dir / "embeddings" / "stats" / "tones.h5") as store:
        assert store.layers == [OUT] and "layers" not in store.provenance  # the baseline's store as before
    assert render_report(run_dir).header[3:] == ["small/best", "small/block1", "small/out", "stats/out"]
    assert "small/block1" in table and "stats/out" in table


PITCH = """
[run]
name = "pitch-layers"
device = "cpu"
seed = 0

[tasks.pitch]
type = "synth"
label = "pitch"
n_train = 120
n_valid = 30
n_test = 60
seconds = 1.0
seed = 0

[models.random]
frontend = { type = "mel", n_mels = 48 }
encoder = { type = "fcn", channels = [8, 16, 32, 64], dim = 16 }

[embed]
window = 1.0
hop = 0.5
num_workers = 0
layers = ["block2", "out"]

[probe]
probes = [{ type = "linear" }]
"""


@pytest.mark.slow
def test_an_early_layer_keeps_the_pitch_that_the_last_one_pools_away(tmp_path: Path) -> None:
    """``fcn`` at random initialisation averages (and maxes) its last map over frequency and time,
    so its embedding has lost where in the spectrum a note sits; ``block2`` still holds 12
    frequency cells of 16 channels. On 12 pitch classes (chance 0.083; 60 test clips, so a
    difference's standard error is about 0.09) the early layer must win by a quarter: it won
    by 0.35 to 0.57 over synth seeds 0-4 (0.78 against 0.40 at seed 0)."""
    path = tmp_path / "pitch.toml"
    path.write_text(PITCH)
    table = run_pipeline(path)
    probes = tmp_path / "runs" / "pitch-layers" / "probes" / "random" / "pitch"
    out = json.loads((probes / "linear.json").read_text())["metrics"]["test"]["accuracy"]
    early = json.loads((probes / "block2" / "linear.json").read_text())["metrics"]["test"]["accuracy"]
    assert early >= 0.6 and early >= out + 0.25, (early, out)
    assert "random/block2" in table and "random/out" in table
    with EmbeddingStore(tmp_path / "runs" / "pitch-layers" / "embeddings" / "random" / "pitch.h5") as store:
        assert store.embeddings(layer="block2").shape[1] == 16 * 12 and store.dim == 16


def test_layers_over_seeds_are_one_column_each(tmp_path: Path) -> None:
    """Under ``[run] seeds`` a layer's results (``<model>.seed<N>/<layer>``) pool over the seeds
    into one column per model and layer, as the embedding's do."""
    rng = np.random.default_rng()
    early, late = rng.uniform(0.6, 0.9, 3), rng.uniform(0.1, 0.4, 3)
    for seed in range(3):
        write_result(tmp_path, f"a.seed{seed}", "t/block2", early[seed], [early[seed] - 0.02, early[seed] + 0.02])
        write_result(tmp_path, f"a.seed{seed}", "t", late[seed], [late[seed] - 0.02, late[seed] + 0.02])
    header, body = table(collect(tmp_path))
    assert header == ["task", "probe", "metric", "a/best", "a/block2", "a/out"]
    assert body[0][4].startswith(f"{early.mean():.3f} ±{early.std(ddof=1):.3f} (3 seeds)")
    assert body[0][5].startswith(f"{late.mean():.3f} ±{late.std(ddof=1):.3f} (3 seeds)")
