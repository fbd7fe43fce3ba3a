"""``musicrep embed``: a catalog into a store folder, each file once by its content, resumable
after kill -9 to the same store as an undisturbed run, bad files skipped and named."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicrep.store import ContentStore

from cli_in_process import cli_outputs

PIPELINE = """
[run]
name = "tiny"
device = "cpu"

[tasks.pitch]
type = "synth"
label = "pitch"
n_classes = 3
n_train = 6
n_valid = 3
n_test = 3
seconds = 0.5

[models.small]
frontend = { type = "mel", n_fft = 256, hop_length = 128, n_mels = 16 }
encoder = { type = "fcn", channels = [4], dim = 8 }

[models.small.pretrain]
objective = { type = "simclr", hidden = [8], projection_dim = 4 }
data = ["pitch"]
steps = 1
batch_size = 4
clip_seconds = 0.5
warmup_steps = 1

[embed]
window = 0.5
hop = 0.25
"""
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    (folder / "p.toml").write_text(PIPELINE)
    code, _, err = cli_outputs("run", folder / "p.toml")
    assert code == 0, err
    return folder / "runs" / "tiny" / "models" / "small"


def catalog(folder: Path, n: int, rng: np.random.Generator) -> Path:
    (folder / "sub").mkdir(parents=True)
    for i in range(n):
        sf.write(folder / ("sub" if i % 2 else ".") / f"clip-{i}.wav",
                 (0.3 * rng.standard_normal(int(16000 * rng.uniform(0.5, 1.0)))).astype(np.float32), 16000)
    (folder / "sub" / "broken.wav").write_bytes(rng.bytes(300))
    return folder


def command(model: Path, store: Path, source: Path) -> list[str]:
    return [sys.executable, "-m", "musicrep.cli", "embed", "--model", str(model), "--store", str(store), str(source),
            "--window", "0.5", "--hop", "0.25", "--num-workers", "0", "--checkpoint-every", "2", "--quiet"]


def contents(store: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    with ContentStore(store) as opened:
        return {key: (opened.embeddings([key])[0], opened.timeline(key)[0]) for key in opened.keys}


def label_clips(source: Path) -> Path:
    """``source/labels.csv`` for the catalog's clips: labels a, b in turn, splits train, train,
    valid, test in turn."""
    clips = sorted(source.rglob("*.wav"))
    rows = ["path,label,split"] + [f"{c.relative_to(source)},{'ab'[i % 2]},{['train', 'train', 'valid', 'test'][i % 4]}"
                                   for i, c in enumerate(clips)]
    labels = source / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    return labels


def reuse_pipeline(path: Path, labels: Path, name: str, load: Path, store: Path) -> Path:
    """A pipeline at ``path`` that probes the csv task ``labels`` with model ``name`` loaded from
    ``load``, its embeddings taken from ``store`` (a store ``musicrep embed`` made)."""
    path.write_text(f"""
[run]
name = "reuse"
device = "cpu"

[tasks.ab]
type = "csv"
path = "{labels}"

[models.{name}]
load = "{load}"
store = "{store}"

[embed]
window = 0.5
hop = 0.25
num_workers = 0

[probe]
probes = [{{ type = "knn", k_grid = [1] }}]
""")
    return path


def test_a_killed_embed_resumes_to_the_same_store(model: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng()
    source = catalog(tmp_path / "audio", 80, rng)
    whole = subprocess.run(command(model, tmp_path / "whole", source), capture_output=True, text=True, env=ENV,
                           timeout=600)
    assert whole.returncode == 0, whole.stderr
    assert json.loads(whole.stdout.splitlines()[-1])["embedded"] == 80
    assert f"{source / 'sub' / 'broken.wav'}" in whole.stderr  # named, skipped

    store = tmp_path / "killed"
    process = subprocess.Popen(command(model, store, source), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=ENV)
    at = int(rng.integers(1, 4))
    deadline = time.monotonic() + 300
    while len(list(store.glob("journal/part-*.npz"))) < at and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    kept = len(list(store.glob("journal/part-*.npz")))
    assert kept >= 1 and not list(store.glob("segments/*.h5"))
    again = subprocess.run(command(model, store, source), capture_output=True, text=True, env=ENV, timeout=600)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout.splitlines()[-1])
    # every file once: those the killed run journaled (the broken one among them, perhaps) and the rest
    assert summary["resumed"] >= 2 * kept - 1 and summary["embedded"] + summary["resumed"] + summary["skipped"] == 81
    a, b = contents(tmp_path / "whole"), contents(store)
    assert a.keys() == b.keys() and len(a) == 80
    for key in a:
        np.testing.assert_allclose(a[key][0], b[key][0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a[key][1], b[key][1], rtol=1e-5, atol=1e-6)
    # the same files again, one renamed: nothing embedded (keys are contents, not names)
    (source / "clip-0.wav").rename(source / "renamed.wav")
    code, out, err = cli_outputs(*command(model, store, source)[3:])
    assert code == 0 and json.loads(out.splitlines()[-1])["embedded"] == 0, err


def test_a_pipeline_takes_a_models_embeddings_from_a_store_made_by_musicrep_embed(model: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng()
    source = catalog(tmp_path / "audio", 12, rng)
    (source / "sub" / "broken.wav").unlink()
    store = tmp_path / "catalog-store"
    assert subprocess.run(command(model, store, source), capture_output=True, env=ENV, timeout=600).returncode == 0
    before = contents(store)
    labels = label_clips(source)
    sf.write(source / "extra.wav", (0.3 * rng.standard_normal(12000)).astype(np.float32), 16000)  # not in the store
    labels.write_text(labels.read_text() + "extra.wav,a,train\n")
    toml = reuse_pipeline(tmp_path / "p.toml", labels, "theirs", model, store)
    code, _, err = cli_outputs("run", toml)
    assert code == 0, err
    assert "embed theirs/ab: 13 tracks (1 embedded now), 0 skipped" in err  # the 12 found are not embedded again
    after = contents(store)
    assert len(after) == 13 and all(np.array_equal(before[k][0], after[k][0]) for k in before)
    code, _, err = cli_outputs("run", toml)
    assert code == 0 and "embed theirs/ab: cached" in err, err


def test_a_second_embed_of_an_unchanged_catalog_reads_no_file_to_key_it(model: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import musicrep.content

    rng = np.random.default_rng()
    source = catalog(tmp_path / "audio", int(rng.integers(3, 7)), rng)
    files = sorted(p for p in source.rglob("*.wav"))
    old = time.time() - 3600  # out of the index's racy window (a file hashed within 2 s of its mtime is reread)
    for path in files:
        os.utime(path, (old, old))
    hashed: list[str] = []
    real = musicrep.content.hash_file
    monkeypatch.setattr(musicrep.content, "hash_file", lambda path: (hashed.append(path), real(path))[1])
    store = tmp_path / "store"
    code, out, err = cli_outputs(*command(model, store, source)[3:])
    assert code == 0, err
    assert sorted(hashed) == [str(p) for p in files] and (store / "content-index").is_file()
    hashed.clear()
    code, out, err = cli_outputs(*command(model, store, source)[3:])
    assert code == 0 and json.loads(out.splitlines()[-1])["embedded"] == 0, err
    assert hashed == []  # stat'ed, not reread
    changed = files[int(rng.integers(len(files)))]
    changed.write_bytes(changed.read_bytes()[:-2] + b"\0\0")
    code, out, err = cli_outputs(*command(model, store, source)[3:])
    assert code == 0, err
    assert hashed == [str(changed)]


def test_a_catalog_is_read_by_the_bounded_reader_with_errors_naming_file_and_line(model: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "list.txt"
    manifest.write_bytes(b"a.wav\n" + b"b\0.wav\n")
    code, _, err = cli_outputs(*command(model, tmp_path / "store", manifest)[3:])
    assert code != 0 and f"{manifest}: line 2 holds a NUL byte" in err


def test_a_model_that_cannot_be_loaded_is_served_by_its_store_and_the_clips_it_lacks_are_one_line(
        model: Path, tmp_path: Path) -> None:
    import shutil

    rng = np.random.default_rng()
    run = tmp_path / "theirs"
    shutil.copytree(model.parent.parent, run)  # the run folder the store was made with, deleted below
    source = catalog(tmp_path / "audio", 8, rng)
    (source / "sub" / "broken.wav").unlink()
    store = tmp_path / "store"
    code, _, err = cli_outputs(*command(run / "models" / "small", store, source)[3:])
    assert code == 0, err
    shutil.rmtree(run)  # the model is gone; its store is not
    labels = label_clips(source)
    toml = reuse_pipeline(tmp_path / "p.toml", labels, "gone", run / "models" / "small", store)
    before = contents(store)
    code, out, err = cli_outputs("run", toml)
    assert code == 0, err
    assert "model gone: cannot be loaded" in err and "embed gone/ab: cached" in err
    assert contents(store).keys() == before.keys()
    code, out, err = cli_outputs("run", toml, "--dry-run", "--json")  # the plan reads the store's key too
    assert code == 0 and {e["action"] for e in json.loads(out) if e["stage"] == "embed"} == {"cached"}, err
    extra = rng.integers(2, 6)
    for i in range(extra):  # clips the store lacks: no model to embed them
        sf.write(source / f"extra-{i}.wav", (0.3 * rng.standard_normal(8000)).astype(np.float32), 16000)
        labels.write_text(labels.read_text() + f"extra-{i}.wav,a,train\n")
    code, _, err = cli_outputs("run", toml)
    assert code != 0
    lines = [line for line in err.splitlines() if "lacks" in line]
    assert len(lines) == 1 and f"lacks {extra} clips the tasks need" in lines[0] and "model 'gone'" in lines[0]
    assert str(source / "extra-0.wav") in lines[0] and "cannot be loaded" in lines[0]


def test_two_ranks_embed_a_catalog_each_its_share_into_one_store(model: Path, tmp_path: Path) -> None:
    import socket

    import torch.multiprocessing as mp
    from ddp_worker import embed_catalog_rank

    rng = np.random.default_rng()
    n = int(rng.integers(5, 10))
    source = catalog(tmp_path / "audio", n, rng)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ranked = tmp_path / "ranked" / "store"
    ranked.parent.mkdir()
    mp.spawn(embed_catalog_rank, args=(2, port, str(model), str(ranked), str(source)), nprocs=2, join=True)
    summaries = [json.loads((ranked.parent / f"rank{r}.json").read_text()) for r in range(2)]
    assert summaries[0] == summaries[1] and summaries[0]["embedded"] == n and summaries[0]["skipped"] == 1
    assert len(list((ranked / "segments").glob("seg-*.h5"))) == 2  # one per rank, read as one store
    code, out, err = cli_outputs(*command(model, tmp_path / "single", source)[3:])
    assert code == 0, err
    a, b = contents(tmp_path / "single"), contents(ranked)
    assert a.keys() == b.keys() and len(a) == n
    for key in a:
        np.testing.assert_allclose(a[key][0], b[key][0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a[key][1], b[key][1], rtol=1e-5, atol=1e-6)
