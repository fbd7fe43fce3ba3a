"""kill -9 during pre-training, embedding and probing, then the same command again: nothing that
was finished is lost, nothing half-written is ever read, and the run ends bit for bit where a
run that was never interrupted ends (weights, training log, every array and attribute of the
HDF5 store, probe results).

Why bit for bit, and not merely close: every random draw of pre-training is a function of
(seed, step) and the checkpoint holds the optimizer and scheduler state; the embed stage ends a
part file only between encoder batches, so a resumed extraction batches its windows exactly as
an uninterrupted one; probes are seeded; and every process runs single-threaded.
"""
from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from killing import (CHECKPOINT_EVERY, MODEL, PROBES, STEPS, TASK, TRACKS, Process, assert_same_outputs,
                     outputs, parts_dir, probes_written, run_dir, steps_logged, store_contents, store_path,
                     tracks_in_parts, undisturbed, write_pipeline)
from musicrep.cli import main
from musicrep.embed import content_keys, extract
from musicrep.model import Embedder
from musicrep.pipeline.runner import run_pipeline
from musicrep.plugins.encoders import FCN
from musicrep.registry import Registry
from musicrep.store import store_status
from pipeline_fakes import PLUGIN, FrameFrontend, ToneTask

SEEDS = (0, 1, 2)  # three kills per seed: one in each stage


def kill_in_each_stage(folder: Path, seed: int) -> Path:
    """kill -9 a run in pre-training, then in embedding, then in probing (each time at a point
    drawn from ``seed``), then let it finish; check at each step what was kept; return the run."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    pipeline = write_pipeline(folder, "killed")
    run = run_dir(pipeline)
    models = run / "models" / MODEL

    # 1. killed while pre-training, after a step drawn from the seed
    at_step = int(rng.integers(1, STEPS - 1))
    process = Process("run", pipeline, log=folder / "1.log")
    process.wait_for(lambda: steps_logged(run) >= at_step, f"pre-training step {at_step}")
    process.kill()
    logged = steps_logged(run)
    saved = torch.load(models / "last.pt", weights_only=True)["step"] if (models / "last.pt").exists() else 0
    assert saved % CHECKPOINT_EVERY == 0 and logged - CHECKPOINT_EVERY <= saved <= logged < STEPS
    assert not (models / "final.pt").exists()

    # 2. the same command: pre-training resumes from that checkpoint; killed while embedding,
    #    once a number of part files drawn from the seed are written
    at_part = int(rng.integers(0, TRACKS // 6 - 2))
    process = Process("run", pipeline, log=folder / "2.log")
    process.wait_for(lambda: parts_dir(run).is_dir() and len(list(parts_dir(run).glob("part-*"))) >= at_part,
                     f"part file {at_part}")
    process.kill()
    assert json.loads((models / "pretrain.json").read_text())["summary"]["resumed_from"] == saved
    said = f"pretrain {MODEL}: resuming from step {saved} of {STEPS} (models/{MODEL}/last.pt)"
    assert (said in process.output()) == (saved > 0)  # no checkpoint yet: nothing to resume from
    assert not store_path(run).exists()  # killed before the store was assembled
    kept = tracks_in_parts(run)
    assert kept < TRACKS

    # 3. again: embedding resumes after the tracks in the parts; killed while probing, once a
    #    number of probe results drawn from the seed are written
    at_probe = int(rng.integers(0, len(PROBES)))
    process = Process("run", pipeline, log=folder / "3.log")
    process.wait_for(lambda: store_path(run).exists() and len(probes_written(run)) >= at_probe,
                     f"probe result {at_probe}")
    process.kill()
    assert "pretrain small: cached" in process.output()
    said = f"embed {MODEL}/{TASK}: {kept} of {TRACKS} tracks already embedded, {TRACKS - kept} to go"
    assert (said in process.output()) == (kept > 0)  # only the tracks left are embedded, and it says so
    if at_probe > 0:  # a probe finished, so the embed stage's summary was written before the kill
        assert f"embed {MODEL}/{TASK}: {TRACKS} tracks" in process.output()  # the whole store, not the rest
    assert f"/{TRACKS - kept} track" in process.output()  # the progress line: the tracks left to embed
    finished = probes_written(run)
    assert len(finished) < len(PROBES)  # killed before the last probe was done

    # 4. to the end: the finished probes are kept, the others done, no temporary file left behind
    text = Process("run", pipeline, log=folder / "4.log").finish()
    for probe in PROBES:
        assert (f"probe {MODEL}/{TASK}/{probe}: cached" in text) == (probe in finished), probe
    assert not list(run.rglob("*.tmp"))
    return run


@pytest.mark.slow
def test_kill_9_in_each_stage_then_rerun_loses_nothing(tmp_path: Path) -> None:
    # The seeds' runs and the undisturbed one go side by side: each process is single-threaded.
    with ThreadPoolExecutor(len(SEEDS) + 1) as pool:
        expected = pool.submit(undisturbed)
        runs = {seed: pool.submit(kill_in_each_stage, tmp_path / f"seed{seed}", seed) for seed in SEEDS}
        for seed, run in runs.items():
            killed = outputs(run.result())
            assert_same_outputs(expected.result(), killed)  # bit for bit, as if never interrupted


# -- files damaged from outside (atomic writes never leave them; disks and copies can): each is
#    recognised, named, and its work done again; none is ever loaded as if it were whole


def make_embedder() -> Embedder:
    torch.manual_seed(0)
    return Embedder(FrameFrontend(FrameFrontend.Config()), FCN(FCN.Config(channels=[4, 8], dim=12)),
                    window=0.5, hop=0.25)


class StopAfter(ToneTask):
    """Stops (as a kill would) after ``n`` decodes."""

    def __init__(self, config: ToneTask.Config, n: int) -> None:
        super().__init__(config)
        self.left = n

    def audio(self, item, sample_rate):
        self.left -= 1
        if self.left < 0:
            raise KeyboardInterrupt
        return super().audio(item, sample_rate)


class BatchMean(nn.Module):
    """An encoder whose outputs depend on the whole batch, as BatchNorm in training mode does."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = FCN(FCN.Config(channels=[4], dim=6))
        self.dim = self.inner.dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = self.inner(features)
        return out + out.mean(dim=0, keepdim=True)


def test_a_resumed_extraction_batches_its_windows_as_an_uninterrupted_one(
        tmp_path: Path, rng: torch.Generator) -> None:
    # 3 windows a track and 5 windows a batch: the encoder sees 2 tracks at a time, while a part
    # is due every 3 tracks; a part that ended there would split an encoder batch.
    seed = int(torch.randint(0, 2**31 - 1, (), generator=rng))
    config = ToneTask.Config(per_class=6, seconds=float(torch.empty(()).uniform_(1.0, 1.2, generator=rng)))

    def embedder() -> Embedder:
        torch.manual_seed(seed)
        return Embedder(FrameFrontend(FrameFrontend.Config()), BatchMean(), window=0.5, hop=0.25)

    whole, resumed = tmp_path / "whole.h5", tmp_path / "resumed.h5"
    extract(embedder(), ToneTask(config), whole, {"m": 1}, batch_size=5, progress=False)
    with pytest.raises(KeyboardInterrupt):
        extract(embedder(), StopAfter(config, 12), resumed, {"m": 1}, batch_size=5, flush_every=3,
                progress=False, num_workers=0, keys=content_keys(ToneTask(config)))  # decodes counted here
    for part in sorted(tmp_path.glob("resumed.h5.store/journal/part-*.npz"))[1:]:
        part.unlink()  # as if killed -9 just after the first part was written
    summary = extract(embedder(), ToneTask(config), resumed, {"m": 1}, batch_size=5, progress=False)
    assert summary.resumed_tracks == 4  # the first part ended after the second batch, not inside it
    assert_same_store(view_and_store(whole), view_and_store(resumed))


def test_damaged_part_files_and_leftover_temporaries_are_never_loaded(
        tmp_path: Path, rng: torch.Generator, caplog: pytest.LogCaptureFixture) -> None:
    config = ToneTask.Config(per_class=6, seconds=float(torch.empty(()).uniform_(1.0, 1.5, generator=rng)))
    provenance = {"model": "m"}
    whole = tmp_path / "whole.h5"
    extract(make_embedder(), ToneTask(config), whole, provenance, batch_size=4, progress=False)

    damaged = tmp_path / "damaged.h5"
    with pytest.raises(KeyboardInterrupt):
        extract(make_embedder(), StopAfter(config, 15), damaged, provenance, batch_size=4, flush_every=2,
                progress=False, num_workers=0, keys=content_keys(ToneTask(config)))
    parts = sorted(damaged.with_name("damaged.h5.store").glob("journal/part-*.npz"))
    assert len(parts) >= 4
    tracks = {}
    for part in parts:
        with np.load(part) as data:
            tracks[part] = dict(data)
    garbage, truncated, short, copied = parts[0], parts[2], parts[-1], parts[1]
    garbage.write_bytes(torch.randint(0, 256, (garbage.stat().st_size,), generator=rng,
                                      dtype=torch.uint8).numpy().tobytes())
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    np.savez(short, **{**tracks[short], "windows": tracks[short]["windows"][:-1]})  # a window short
    with open(copied.with_name(f".{copied.name}.x1y2.tmp"), "wb") as f:  # looks whole, other numbers
        np.savez(f, **{**tracks[copied], "windows": tracks[copied]["windows"] + 1})
    kept = sum(len(tracks[p]["ids"]) for p in parts if p not in (garbage, truncated, short))

    with caplog.at_level(logging.WARNING, logger="musicrep.store"):
        summary = extract(make_embedder(), ToneTask(config), damaged, provenance, batch_size=4, progress=False)
    for part in (garbage, truncated, short):
        assert f"{part}: " in caplog.text
    assert summary.resumed_tracks == kept and summary.tracks == 18 - kept  # the damaged parts' tracks redone
    assert_same_store(view_and_store(whole), view_and_store(damaged))  # the same rows, in task order


def view_and_store(view: Path) -> dict:
    """Every dataset and attribute of a view (but the name of its store folder) and of its store's segments."""
    out = {k: v for k, v in store_contents(view).items() if k != "@store"}
    for segment in sorted(view.with_name(view.name + ".store").glob("segments/*.h5")):
        out.update({f"{segment.name}/{k}": v for k, v in store_contents(segment).items()})
    return out


def assert_same_store(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name, value in a.items():
        assert np.array_equal(value, b[name]) if isinstance(value, np.ndarray) else value == b[name], name


@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    reg.register(PLUGIN, name="fakes", package="tests")
    return reg


TONES = """
[run]
name = "tones"
device = "cpu"
seed = 2

[tasks.tones]
type = "tones"

[models.small]
frontend = {{ type = "frames" }}
encoder = {{ type = "fcn", channels = [4], dim = 8 }}

[models.small.pretrain]
objective = {{ type = "simclr", hidden = [8], projection_dim = 8 }}
data = ["tones"]
steps = 4
batch_size = 4
clip_seconds = 0.5
warmup_steps = 1
checkpoint_every = 2

[embed]
window = 0.5
hop = 0.25

[probe]
probes = [{{ type = "linear" }}, {{ type = "knn", k_grid = [1, 3] }}]
"""


def test_a_damaged_store_result_checkpoint_or_log_is_redone_and_said_so(
        tmp_path: Path, registry: Registry, capsys: pytest.CaptureFixture) -> None:
    pipeline = tmp_path / "tones.toml"
    pipeline.write_text(TONES.format())
    run = tmp_path / "runs" / "tones"
    models, store = run / "models" / "small", run / "embeddings" / "small" / "tones.h5"
    probes = run / "probes" / "small" / "tones"

    def log() -> list[tuple[int, float]]:
        return [(r["step"], r["loss"]) for r in map(json.loads, (models / "metrics.jsonl").read_text().splitlines())]

    def rerun() -> str:
        run_pipeline(pipeline, registry=registry)
        return capsys.readouterr().err

    rerun()
    weights = torch.load(models / "final.pt", weights_only=True)["embedder"]
    first = {"log": log(), "store": store_contents(store), "linear": (probes / "linear.json").read_text(),
             "pretrain": json.loads((models / "pretrain.json").read_text())["summary"]}

    # a truncated store and a torn probe result: `musicrep report` names the result and shows
    # the rest; the rerun says what it redoes
    provenance = json.loads(first["store"]["@provenance"])
    store.write_bytes(store.read_bytes()[: store.stat().st_size // 2])
    assert store_status(store, provenance) == "unreadable"
    (probes / "linear.json").write_text(first["linear"][:40])
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr()
    assert f"{probes / 'linear.json'}: unreadable probe result left out" in out.err
    assert f"no PCA plot: {store}: cannot open embedding store" in out.err
    assert "knn" in out.out and "linear" not in out.out
    err = rerun()
    assert "pretrain small: cached" in err
    assert "embed small/tones: cached" in err  # the store is sound: only the task's view is written again
    assert f"probe small/tones/linear: the existing result {probes / 'linear.json'} is unreadable" in err
    assert "probe small/tones/knn: cached" in err
    assert_same_store(first["store"], store_contents(store))
    assert (probes / "linear.json").read_text() == first["linear"]

    # an unreadable final model, a torn last log line, temporaries of writes cut short: the
    # model comes back from the last checkpoint (all steps done), the log without the torn line
    (models / "final.pt").write_bytes(b"\x00" * 100)
    with open(models / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "lo')
    leftovers = [models / ".last.pt.k3j4.tmp", store.with_name(".tones.h5.a1b2.tmp"), probes / ".knn.json.z.tmp"]
    for leftover in leftovers:
        leftover.write_bytes(b"half")
    err = rerun()
    assert f"{models / 'final.pt'}: not a readable checkpoint" in err
    summary = json.loads((models / "pretrain.json").read_text())["summary"]
    assert summary["resumed_from"] == 4 and summary["final_loss"] == first["pretrain"]["final_loss"]
    assert log() == first["log"]
    assert not any(leftover.exists() for leftover in leftovers)
    assert "embed small/tones: cached" in err  # the same weights: the same store

    # an unreadable last checkpoint (and no final model): pre-training starts again, to the same model
    (models / "last.pt").write_bytes((models / "last.pt").read_bytes()[:500])
    (models / "final.pt").unlink()
    err = rerun()
    assert f"{models / 'last.pt'}: not a readable checkpoint" in err
    assert json.loads((models / "pretrain.json").read_text())["summary"]["resumed_from"] == 0
    again = torch.load(models / "final.pt", weights_only=True)["embedder"]
    assert all(torch.equal(weights[name], again[name]) for name in weights)
    assert log() == first["log"]
    assert "embed small/tones: cached" in err
