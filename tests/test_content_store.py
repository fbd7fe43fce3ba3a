"""The content-addressed store in a pipeline: audio keyed by its bytes, tasks as views, keys
without the package version, and every decision said with its reasons."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import musicrep
from musicrep.pipeline.runner import run_pipeline
from musicrep.registry import Registry
from musicrep.store import ContentStore, EmbeddingStore
from pipeline_fakes import PLUGIN

RATE = 8000
PIPELINE = """
[run]
name = "shared"
device = "cpu"

[tasks.pitch]
type = "csv"
path = "data/pitch.csv"

[tasks.loud]
type = "csv"
path = "data/loud.csv"

[models.small]
frontend = {{ type = "frames" }}
encoder = {{ type = "fcn", channels = [4], dim = 8 }}

[embed]
window = 0.5
hop = {hop}
num_workers = 0

[probe]
probes = [{{ type = "knn", k_grid = {k_grid} }}]
"""
SPLITS = ["train"] * 4 + ["valid", "test"]


@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    reg.register(PLUGIN, name="fakes", package="tests")
    return reg


def tone(freq: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(RATE) / RATE
    return (0.5 * np.sin(2 * np.pi * freq * t + rng.uniform(0, 6)) + 0.05 * rng.standard_normal(RATE)).astype(np.float32)


def make_project(tmp_path: Path, rng: np.random.Generator, hop: float = 0.25, k_grid: str = "[1, 3]") -> Path:
    """Two CSV tasks over the same 18 clips (pitch labels and loudness labels)."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    pitch, loud = ["path,label,split"], ["path,label,split"]
    for c, freq in enumerate((220.0, 330.0, 440.0)):
        for i, split in enumerate(SPLITS):
            name = f"{split}/clip-{c}-{i}.wav"
            (data / split).mkdir(exist_ok=True)
            sf.write(data / name, tone(freq, rng), RATE)
            pitch.append(f"{name},{int(freq)},{split}")
            loud.append(f"{name},{'odd' if i % 2 else 'even'},{split}")
    (data / "pitch.csv").write_text("\n".join(pitch) + "\n")
    (data / "loud.csv").write_text("\n".join(loud) + "\n")
    return rewrite(tmp_path, hop, k_grid)


def rewrite(tmp_path: Path, hop: float = 0.25, k_grid: str = "[1, 3]") -> Path:
    path = tmp_path / "pipeline.toml"
    path.write_text(PIPELINE.format(hop=hop, k_grid=k_grid))
    return path


def store_folders(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "runs" / "shared" / "stores").iterdir())


def plan(path: Path, registry: Registry, capsys: pytest.CaptureFixture, **kwargs) -> list[dict]:
    capsys.readouterr()
    run_pipeline(path, registry=registry, dry_run=True, as_json=True, **kwargs)
    return json.loads(capsys.readouterr().out)


def test_two_tasks_sharing_audio_embed_it_once(tmp_path: Path, registry: Registry,
                                               capsys: pytest.CaptureFixture) -> None:
    path = make_project(tmp_path, np.random.default_rng(1))
    run_pipeline(path, registry=registry)
    err = capsys.readouterr().err
    assert "embed small/pitch: not embedded yet" in err and "embed small/loud: cached" in err
    assert "embed small/pitch: 18 tracks (18 embedded now), 0 skipped" in err and err.count("embedded now") == 1
    (store,) = store_folders(tmp_path)
    with ContentStore(store) as opened:
        assert len(opened) == 18
    views = tmp_path / "runs" / "shared" / "embeddings" / "small"
    with EmbeddingStore(views / "pitch.h5") as a, EmbeddingStore(views / "loud.h5") as b:
        assert a.label_names == ["220", "330", "440"] and b.label_names == ["even", "odd"]
        np.testing.assert_array_equal(a.embeddings(), b.embeddings())  # the same rows, one copy


def test_changed_audio_under_the_same_name_is_embedded_again_and_its_probes_rerun(
        tmp_path: Path, registry: Registry, capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(2)
    path = make_project(tmp_path, rng)
    run_pipeline(path, registry=registry)
    result = tmp_path / "runs" / "shared" / "probes" / "small" / "pitch" / "knn.json"
    before = json.loads(result.read_text())
    changed = sorted((tmp_path / "data" / "test").glob("*.wav"))
    for clip in changed:  # other audio under the same names: all at one pitch
        sf.write(clip, tone(880.0, rng), RATE)
    entries = plan(path, registry, capsys)
    embed = [e for e in entries if e["stage"] == "embed" and e["task"] == "pitch"][0]
    assert embed["action"] == "run"
    assert embed["reasons"] == [f"3 audio files changed ({', '.join('test/' + c.name for c in changed)})"]
    run_pipeline(path, registry=registry)
    err = capsys.readouterr().err
    assert "embed small/pitch: 18 tracks (3 embedded now), 0 skipped" in err
    assert "probe small/pitch/knn: task items, audio or labels changed" in err
    assert "probe small/loud/knn: task items, audio or labels changed" in err
    after = json.loads(result.read_text())
    assert after["key"] != before["key"]
    view = tmp_path / "runs" / "shared" / "embeddings" / "small" / "pitch.h5"
    with EmbeddingStore(view) as opened:
        assert len(opened.store) == 21  # the old rows stay, the view uses the new ones
        test = opened.embeddings("test")
    assert np.ptp(test, axis=0).max() < np.ptp(before_test_rows(tmp_path), axis=0).max()


def before_test_rows(tmp_path: Path) -> np.ndarray:
    """The stored rows the test clips had before they changed (the store keeps them)."""
    view = tmp_path / "runs" / "shared" / "embeddings" / "small" / "pitch.h5"
    with EmbeddingStore(view) as opened:
        current = set(opened.keys)
        old = [k for k in opened.store.keys if k not in current]
        return opened.store.embeddings(old)


def bump_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new release: every module that holds musicrep's version sees another one."""
    for name, module in list(sys.modules.items()):
        if name.startswith("musicrep") and getattr(module, "__version__", None) == musicrep.__version__:
            monkeypatch.setattr(module, "__version__", "99.0.0")


def test_a_new_package_version_keeps_every_stage_cached(tmp_path: Path, registry: Registry,
                                                        capsys: pytest.CaptureFixture,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_project(tmp_path, np.random.default_rng(3))
    run_pipeline(path, registry=registry)
    bump_version(monkeypatch)
    entries = plan(path, registry, capsys)
    assert entries and all(e["action"] == "cached" and e["reasons"] == [] for e in entries)
    run_pipeline(path, registry=registry)
    err = capsys.readouterr().err
    assert "embedded now" not in err and "test accuracy" not in err


def test_force_embed_reruns_the_probes(tmp_path: Path, registry: Registry, capsys: pytest.CaptureFixture) -> None:
    path = make_project(tmp_path, np.random.default_rng(4))
    run_pipeline(path, registry=registry)
    entries = plan(path, registry, capsys, force=["embed"])
    assert {(e["stage"], e["action"]) for e in entries} == {("embed", "run"), ("probe", "run")}
    assert all(e["reasons"] == ["--force embed"] for e in entries)
    run_pipeline(path, registry=registry, force=["embed"])
    err = capsys.readouterr().err
    assert "probe small/pitch/knn: --force embed" in err and "probe small/loud/knn: --force embed" in err


def test_dry_run_json_names_each_changed_setting(tmp_path: Path, registry: Registry,
                                                 capsys: pytest.CaptureFixture) -> None:
    path = make_project(tmp_path, np.random.default_rng(5))
    entries = plan(path, registry, capsys)
    assert {tuple(sorted(e)) for e in entries} >= {("action", "layer", "model", "probe", "reasons", "stage", "task")}
    assert [e["reasons"] for e in entries if e["stage"] == "embed"] == [["not embedded yet"]] * 2
    assert all(e["reasons"] == ["no result yet"] for e in entries if e["stage"] == "probe")
    run_pipeline(path, registry=registry)
    rewrite(tmp_path, hop=0.125, k_grid="[1, 5]")
    entries = plan(path, registry, capsys)
    by = {(e["stage"], e["task"]): e for e in entries}
    assert by["embed", "pitch"]["action"] == "run" and by["embed", "pitch"]["reasons"] == ["hop 0.25 -> 0.125"]
    assert "probe.k_grid [1, 3] -> [1, 5]" in by["probe", "pitch"]["reasons"]
    assert "embeddings changed" in by["probe", "pitch"]["reasons"]
    rewrite(tmp_path, k_grid="[1, 5]")  # the probe alone changed: embeddings stay cached
    entries = plan(path, registry, capsys)
    by = {(e["stage"], e["task"]): e for e in entries}
    assert by["embed", "pitch"] == {"stage": "embed", "model": "small", "task": "pitch", "action": "cached",
                                    "reasons": []}
    assert by["probe", "loud"]["reasons"] == ["probe.k_grid [1, 3] -> [1, 5]"]


def test_a_changed_setting_makes_a_store_beside_the_old_one(tmp_path: Path, registry: Registry,
                                                            capsys: pytest.CaptureFixture) -> None:
    path = make_project(tmp_path, np.random.default_rng(6))
    run_pipeline(path, registry=registry)
    rewrite(tmp_path, hop=0.125)
    run_pipeline(path, registry=registry)  # no refusal: nothing is lost
    assert "embed small/pitch: hop 0.25 -> 0.125" in capsys.readouterr().err
    assert len(store_folders(tmp_path)) == 2
    rewrite(tmp_path)  # back again: the first store serves, nothing is embedded
    run_pipeline(path, registry=registry)
    err = capsys.readouterr().err
    assert "embed small/pitch: cached" in err and "embedded now" not in err
    assert "probe small/pitch/knn: embeddings changed" in err


def test_a_tasks_content_keys_are_looked_up_in_batches_and_equal_one_key_per_item(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from musicrep import content
    from musicrep.content import ContentIndex
    from musicrep.embed import content_keys, unreadable_key
    from musicrep.tasks import Item, Task

    rng = np.random.default_rng()
    n = int(rng.integers(content.LOOKUP_BATCH + 1, 2 * content.LOOKUP_BATCH))
    for i in range(20):
        (tmp_path / f"{i}.wav").write_bytes(rng.bytes(int(rng.integers(1, 64))))
    items = [Item(f"it{i}", str(tmp_path / f"{rng.integers(20)}.wav"), ["a"],
                  start=None if i % 3 else float(rng.integers(0, 5)), end=None if i % 3 else 9.0) for i in range(n)]
    items[int(rng.integers(n))] = Item("gone", str(tmp_path / "missing.wav"), ["a"])

    class Files(Task):
        label_names = ["a"]

        def load_items(self) -> list[Item]:
            return items

    batches = []
    real = ContentIndex._batch
    monkeypatch.setattr(ContentIndex, "_batch", lambda self, paths: (batches.append(len(paths)), real(self, paths))[1])
    keys = content_keys(Files(), ContentIndex(tmp_path / "index"))
    many = [b for b in batches if b > 1]  # the batch holding the missing file is redone one file at a time
    assert len(many) <= -(-n // content.LOOKUP_BATCH) and sum(many) >= n - content.LOOKUP_BATCH > 0
    monkeypatch.setattr(ContentIndex, "_batch", real)
    one = ContentIndex()
    expected = []
    for item in items:
        try:
            expected.append(Files().content_key(item, one))
        except OSError:
            expected.append(unreadable_key(item.path))
    assert keys == expected
