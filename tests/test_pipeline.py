"""The whole pipeline on a tiny task: embed -> HDF5 -> probe -> report, cached and resumable."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from musicrep.errors import ConfigError, MusicrepError
from musicrep.pipeline.runner import run_pipeline
from musicrep.registry import Registry
from musicrep.store import EmbeddingStore
from pipeline_fakes import PLUGIN

PIPELINE = """
[run]
name = "tiny"
seed = 3

[tasks.tones]
type = "tones"
bad_items = {bad}

[models.small]
frontend = {{ type = "frames" }}
encoder = {{ type = "fcn", channels = [4, 8], dim = 16 }}

[models.other]
frontend = {{ type = "frames" }}
encoder = {{ type = "fcn", channels = [4], dim = 8 }}

[embed]
window = 0.5
hop = 0.25
batch_size = 8

[probe]
probes = [{{ type = "linear" }}, {{ type = "knn", k_grid = [1, 3] }}]
"""


@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    reg.register(PLUGIN, name="fakes", package="tests")
    return reg


def write_pipeline(tmp_path: Path, bad: int = 0) -> Path:
    path = tmp_path / "pipeline.toml"
    path.write_text(PIPELINE.format(bad=bad))
    return path


def test_pipeline_runs_end_to_end_and_caches(tmp_path: Path, registry: Registry,
                                             caplog: pytest.LogCaptureFixture) -> None:
    path = write_pipeline(tmp_path, bad=1)
    table = run_pipeline(path, registry=registry)
    assert "bad-0.wav: not an audio file" in caplog.text
    run_dir = tmp_path / "runs" / "tiny"
    assert "small" in table and "other" in table and "tones" in table
    store_path = run_dir / "embeddings" / "small" / "tones.h5"
    with EmbeddingStore(store_path) as store:
        assert len(store) == 18 and store.dim == 16
        assert [s["id"] for s in store.skipped] == ["bad-0"]
        emb, offsets = store.timeline(0)
        assert emb.shape == (len(offsets), 16)
        np.testing.assert_allclose(offsets, 0.25 * np.arange(len(offsets)), atol=0.02)
        np.testing.assert_allclose(store.embeddings()[0], emb.mean(axis=0), rtol=1e-5, atol=1e-6)
        before = store.arrays()
    result = json.loads((run_dir / "probes" / "small" / "tones" / "linear.json").read_text())
    assert result["primary"] == "accuracy" and result["n"]["test"] == 3
    assert 0.0 <= result["metrics"]["test"]["accuracy"] <= 1.0
    assert (run_dir / "report.md").exists() and (run_dir / "results.csv").exists()
    mtime = store_path.stat().st_mtime_ns
    run_pipeline(path, registry=registry)  # everything cached: the store is not rewritten
    assert store_path.stat().st_mtime_ns == mtime
    run_pipeline(path, registry=registry, force=["embed"])
    with EmbeddingStore(store_path) as store:
        after = store.arrays()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])  # same seed, same store


def test_on_bad_audio_fail_names_the_file(tmp_path: Path, registry: Registry) -> None:
    path = write_pipeline(tmp_path, bad=1)
    path.write_text(path.read_text().replace("batch_size = 8", "batch_size = 8\non_bad_audio = \"fail\""))
    with pytest.raises(MusicrepError, match="bad-0.wav"):
        run_pipeline(path, registry=registry)


def test_probe_for_an_unservable_kind_fails_before_work(tmp_path: Path, registry: Registry,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from plugins_probe_kinds import restrict_linear_to_regression

    restrict_linear_to_regression(monkeypatch)
    path = write_pipeline(tmp_path)
    with pytest.raises(ConfigError, match="probe 'linear' cannot serve task 'tones'"):
        run_pipeline(path, registry=registry)
    assert not (tmp_path / "runs" / "tiny" / "embeddings").exists()


def test_report_command_rewrites_the_report_with_plots(tmp_path: Path, registry: Registry) -> None:
    from musicrep.cli import main

    path = write_pipeline(tmp_path)
    run_pipeline(path, registry=registry)
    run_dir = tmp_path / "runs" / "tiny"
    (run_dir / "report.md").unlink()
    assert main(["report", str(run_dir)]) == 0
    assert "| tones" in (run_dir / "report.md").read_text()
    plots = {p.name for p in (run_dir / "plots").glob("*.png")}
    assert {"tones-linear.png", "tones-knn.png", "pca-small-tones.png", "pca-other-tones.png"} <= plots
    rows = json.loads((run_dir / "results.json").read_text())
    assert {r["model"] for r in rows} == {"small", "other"}
    assert main(["report", str(tmp_path)]) == 2  # not a run directory: a clear error


def test_relative_task_paths_are_relative_to_the_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from musicrep.pipeline.spec import load_pipeline

    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "p.toml").write_text(
        '[tasks.mine]\ntype = "csv"\npath = "data/manifest.csv"\n'
        '[models.m]\nfrontend = "torch-mel"\nencoder = "fcn"\n')
    monkeypatch.chdir(tmp_path)
    spec = load_pipeline("project/p.toml")
    assert spec.tasks["mine"].config.path == str(folder / "data" / "manifest.csv")


def test_dry_run_reports_what_is_cached_and_writes_nothing(tmp_path: Path, registry: Registry,
                                                           capsys: pytest.CaptureFixture) -> None:
    path = write_pipeline(tmp_path)
    assert run_pipeline(path, registry=registry, dry_run=True) is None
    err = capsys.readouterr().err
    assert "embed small/tones: to do" in err and "probe other/tones/knn: to do" in err
    assert not (tmp_path / "runs").exists()
    run_pipeline(path, registry=registry)
    capsys.readouterr()
    run_pipeline(path, registry=registry, dry_run=True)
    err = capsys.readouterr().err
    assert "embed small/tones: cached" in err and "probe other/tones/knn: cached" in err
    run_pipeline(path, registry=registry, dry_run=True, force=["probe"])
    err = capsys.readouterr().err
    assert "embed small/tones: cached" in err and "probe small/tones/linear: to do" in err
