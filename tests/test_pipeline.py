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
device = "cpu"
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


def test_a_changed_model_config_embeds_beside_the_old_store_and_says_why(tmp_path: Path, registry: Registry,
                                                                          capsys: pytest.CaptureFixture) -> None:
    path = write_pipeline(tmp_path)
    run_pipeline(path, registry=registry)
    run_dir = tmp_path / "runs" / "tiny"
    store_path = run_dir / "embeddings" / "other" / "tones.h5"
    stores = sorted((run_dir / "stores").iterdir())
    path.write_text(path.read_text().replace("channels = [4], dim = 8", "channels = [4], dim = 12"))
    capsys.readouterr()
    run_pipeline(path, registry=registry)
    err = capsys.readouterr().err
    assert "embed other/tones: weights changed; model.encoder.dim 8 -> 12" in err
    assert "embed small/tones: cached" in err and "probe other/tones/knn: embeddings changed" in err
    with EmbeddingStore(store_path) as store:
        assert store.dim == 12
    assert set(stores) < set((run_dir / "stores").iterdir())  # the old stores are kept


def test_a_damaged_store_segment_is_embedded_again(tmp_path: Path, registry: Registry,
                                                   capsys: pytest.CaptureFixture) -> None:
    import h5py

    path = write_pipeline(tmp_path)
    run_pipeline(path, registry=registry)
    store_path = tmp_path / "runs" / "tiny" / "embeddings" / "small" / "tones.h5"
    with EmbeddingStore(store_path) as store:
        before, segments = store.embeddings(), [s.path for s in store.store.segments]
    with h5py.File(segments[0], "r+") as h5:  # its keys no longer match their checksum
        h5.attrs["checksums"] = json.dumps({"keys": "0" * 64})
    capsys.readouterr()
    run_pipeline(path, registry=registry)
    assert f"embed small/tones: {segments[0].name} is damaged (the checksum of /keys does not match)" in \
        capsys.readouterr().err
    with EmbeddingStore(store_path) as store:
        np.testing.assert_allclose(store.embeddings(), before, atol=1e-6)


def test_a_model_pretrained_with_another_config_stops_before_any_work(tmp_path: Path, registry: Registry) -> None:
    path = tmp_path / "pipeline.toml"
    pretrain = ('\n[models.small.pretrain]\nobjective = { type = "simclr", hidden = [8], projection_dim = 4 }\n'
                'data = ["tones"]\nsteps = 2\nbatch_size = 4\nclip_seconds = 0.5\nwarmup_steps = 1\n')
    text = PIPELINE.format(bad=0).replace("[models.other]", pretrain + "\n[models.other]")
    path.write_text(text)
    run_pipeline(path, registry=registry)
    final = tmp_path / "runs" / "tiny" / "models" / "small" / "final.pt"
    mtime = final.stat().st_mtime_ns
    path.write_text(text.replace("steps = 2", "steps = 3"))
    with pytest.raises(ConfigError, match=r"pre-training of model 'small'.*pretrain.steps: 2 -> 3.*--force pretrain"):
        run_pipeline(path, registry=registry)
    assert final.stat().st_mtime_ns == mtime
    run_pipeline(path, registry=registry, force=["pretrain"])  # new weights: embeddings follow without a conflict
    assert json.loads(final.with_name("pretrain.json").read_text())["summary"]["steps"] == 3


PRETRAINED = """
[models.small.pretrain]
objective = {{ type = "simclr", hidden = [8], projection_dim = 8 }}
data = ["tones"]
steps = {steps}
batch_size = 4
clip_seconds = 0.5
warmup_steps = 1
"""


def test_every_stage_announces_its_start_and_end_once_per_run_cached_or_not(tmp_path: Path,
                                                                          registry: Registry) -> None:
    """A recording plugin sees each stage start and end exactly once per run, in order, whether
    the stage computed (first run, a forced stage) or found all its results cached."""
    from musicrep.hookspecs import hookimpl

    events: list[tuple[str, str, dict]] = []

    class Recorder:
        @hookimpl
        def musicrep_on_stage_start(self, stage, run_dir, info):
            events.append(("start", stage, info))

        @hookimpl
        def musicrep_on_stage_end(self, stage, run_dir, summary):
            events.append(("end", stage, summary))

        @hookimpl
        def musicrep_on_train_start(self, run_dir, start_step, steps):
            events.append(("train", str(start_step), {"steps": steps, "run_dir": run_dir}))

    registry.register(Recorder(), name="recorder", package="tests")
    path = write_pipeline(tmp_path)
    path.write_text(path.read_text() + PRETRAINED.format(steps=3))
    stages = ["pretrain", "embed", "probe", "report"]

    def run(**kwargs) -> dict[str, dict]:
        events.clear()
        run_pipeline(path, registry=registry, **kwargs)
        trained = [e for e in events if e[0] == "train"]
        staged = [e for e in events if e[0] != "train"]
        assert [(kind, stage) for kind, stage, _ in staged] == [(k, s) for s in stages for k in ("start", "end")]
        for kind, stage, info in staged:
            if kind == "start":
                assert info["models"] == ["small", "other"] and info["tasks"] == ["tones"]
        ends = {stage: summary for kind, stage, summary in staged if kind == "end"}
        ends["train"] = trained
        return ends

    first = run()
    assert [not first[s]["cached"] for s in stages] == [True, True, True, True]
    assert first["pretrain"]["models"]["small"]["steps"] == 3
    assert first["embed"]["stores"]["other/tones"]["tracks"] == 18
    assert set(first["probe"]["results"]["small/tones"]) == {"linear", "knn"}
    assert first["train"] == [("train", "0", {"steps": 3, "run_dir": str(tmp_path / "runs" / "tiny" / "models" / "small")})]

    cached = run()
    assert [cached[s]["cached"] for s in stages] == [True, True, True, False]  # a report is always rendered
    assert cached["pretrain"]["models"] == {"small": "cached"} and cached["train"] == []
    assert set(cached["embed"]["stores"].values()) == {"cached"}

    forced = run(force=["probe"])
    assert [forced[s]["cached"] for s in stages] == [True, True, False, False]
    assert all(isinstance(v, float) for v in forced["probe"]["results"]["other/tones"].values())


def test_a_resumed_run_says_where_it_resumes_and_counts_the_whole_store(
        tmp_path: Path, registry: Registry, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Interrupted in pre-training, then in embedding: each rerun names the checkpoint it resumes
    from and the tracks already embedded, and the embed summary counts every track of the store."""
    import re

    from musicrep.hookspecs import hookimpl
    from pipeline_fakes import ToneTask

    class StopAtStep:
        @hookimpl
        def musicrep_on_train_step(self, step, metrics, run_dir):
            if step == 3:
                raise KeyboardInterrupt  # as Ctrl-C would, between steps

    path = write_pipeline(tmp_path)
    # num_workers = 0: the interrupt below is raised while decoding, in this process
    path.write_text(path.read_text().replace("batch_size = 8", "batch_size = 8\ncheckpoint_every = 4\nnum_workers = 0")
                    + PRETRAINED.format(steps=6) + "checkpoint_every = 2\n")
    stopper = StopAtStep()
    registry.register(stopper, name="stopper", package="tests")
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(path, registry=registry)
    registry._pm.unregister(stopper)
    capsys.readouterr()

    decoded, real_audio = [], ToneTask.audio

    class StopEmbedding:
        @hookimpl
        def musicrep_on_stage_start(self, stage, run_dir, info):
            if stage == "embed":
                decoded.append(0)  # count the embed stage's decodes only, not pre-training's

    def audio_then_stop(self, item, sample_rate):
        if decoded:
            decoded[0] += 1
            if decoded[0] == 11:
                raise KeyboardInterrupt
        return real_audio(self, item, sample_rate)

    monkeypatch.setattr(ToneTask, "audio", audio_then_stop)
    registry.register(StopEmbedding(), name="embed-stopper", package="tests")
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(path, registry=registry)
    err = capsys.readouterr().err
    assert "pretrain small: resuming from step 2 of 6 (models/small/last.pt)" in err
    monkeypatch.setattr(ToneTask, "audio", real_audio)

    run_pipeline(path, registry=registry)
    err = capsys.readouterr().err
    resumed = re.search(r"embed small/tones: (\d+) of 18 tracks already embedded, (\d+) to go", err)
    assert resumed, err
    kept, left = int(resumed[1]), int(resumed[2])
    assert 0 < kept < 18 and kept + left == 18
    assert f"embed small/tones: 18 tracks ({left} embedded now, {kept} by an interrupted run), 0 skipped" in err
    assert "embed other/tones: 18 tracks (18 embedded now), 0 skipped" in err


def test_seeds_repeat_pretraining_and_probing_and_the_report_groups_them(tmp_path: Path, registry: Registry,
                                                                         capsys: pytest.CaptureFixture) -> None:
    """``[run] seeds`` runs every model once per seed as ``<model>.seed<N>`` (its own pre-training
    with that seed, its own probes) and the table shows one column per model over its seeds."""
    path = write_pipeline(tmp_path)
    path.write_text(path.read_text().replace("seed = 3", "seeds = [4, 9]") + PRETRAINED.format(steps=2))
    table = run_pipeline(path, registry=registry)
    run_dir = tmp_path / "runs" / "tiny"
    names = ["small.seed4", "small.seed9", "other.seed4", "other.seed9"]
    assert sorted(p.name for p in (run_dir / "probes").iterdir()) == sorted(names)
    for seed in (4, 9):
        record = json.loads((run_dir / "models" / f"small.seed{seed}" / "pretrain.json").read_text())
        assert record["description"]["seed"] == seed
        result = json.loads((run_dir / "probes" / f"small.seed{seed}" / "tones" / "linear.json").read_text())
        assert result["seed"] == seed
    header = table.splitlines()[0].split()
    assert header == ["task", "probe", "metric", "small", "other"]  # the TOML's order
    assert table.count("(2 seeds)") == 4  # two models, two probes
    rows = json.loads((run_dir / "results.json").read_text())
    over = next(r for r in rows if r["model"] == "small" and r["probe"] == "knn" and r["split"] == "test")
    each = [r["value"] for r in rows if r["model"].startswith("small.seed") and r["probe"] == "knn"
            and r["split"] == "test"]
    assert over["seeds"] == 2 and over["value"] == pytest.approx(np.mean(each))
    assert over["spread"] == pytest.approx(np.std(each, ddof=1))
    err = capsys.readouterr().err
    assert "seeds 4, 9: every model is pre-trained, embedded and probed once per seed" in err
    run_pipeline(path, registry=registry)  # cached per seed
    err = capsys.readouterr().err
    assert all(f"embed {name}/tones: cached" in err for name in names)


def test_seed_and_seeds_together_are_an_error_naming_both(tmp_path: Path, registry: Registry) -> None:
    path = write_pipeline(tmp_path)
    path.write_text(path.read_text().replace("seed = 3", "seed = 3\nseeds = [0, 1]"))
    with pytest.raises(ConfigError, match=r"\[run\].*seeds.*either 'seed' or 'seeds', not both"):
        run_pipeline(path, registry=registry)
    path.write_text(path.read_text().replace("seed = 3\n", "").replace("seeds = [0, 1]", "seeds = [2, 2]"))
    with pytest.raises(ConfigError, match="repeats a seed"):
        run_pipeline(path, registry=registry)
