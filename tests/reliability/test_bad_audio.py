"""Odd and broken audio files through decode, the embed stage and a real ``musicrep run``.

Odd but valid files (8 channels, 8 kHz, 96 kHz, flac/ogg/mp3, unicode and spaces in the path)
must decode to the right content. Broken ones (empty, truncated, corrupt header, NaN or inf
samples, text or random bytes with an audio extension, a folder, a missing file) must each be
reported by name: skipped and counted under ``on_bad_audio = "skip"``, an error naming the file
under ``"fail"``. Every file is generated here, with fresh random content each run.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from musicrep import get_component
from musicrep.audio import BadAudioError, load
from musicrep.cli import main
from musicrep.embed import extract
from musicrep.model import Embedder
from musicrep.store import EmbeddingStore

SR = 16000  # the rate the tests' model runs at
UNICODE_DIR = "Motörhead – Ace of Spades"


@dataclass
class Corpus:
    root: Path
    good: dict[str, Path]  # name -> odd but valid file
    bad: dict[str, Path]   # name -> broken file (or missing path)
    facts: dict[str, object]  # what the good files hold, for the content checks


def _tone(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _truncate(src: Path, dst: Path, keep: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def _make_corpus(root: Path) -> Corpus:
    rng = np.random.default_rng()
    root.mkdir(parents=True, exist_ok=True)
    good, bad, facts = {}, {}, {}

    # -- odd but valid ---------------------------------------------------------------------
    channels = rng.uniform(-0.4, 0.4, size=(int(0.6 * SR), 8)).astype(np.float32)
    good["8ch-float"] = root / "eight channels.wav"
    sf.write(good["8ch-float"], channels, SR, subtype="FLOAT")
    facts["8ch-float"] = channels.mean(axis=1)
    pcm = rng.integers(-20000, 20000, size=(int(0.6 * SR), 8), dtype=np.int16)
    good["8ch-pcm16"] = root / "eight-pcm16.wav"
    sf.write(good["8ch-pcm16"], pcm, SR, subtype="PCM_16")
    facts["8ch-pcm16"] = pcm.astype(np.float64).mean(axis=1) / 32768
    f8k = float(rng.uniform(500, 3500))
    good["8k"] = root / "rate 8k.wav"
    sf.write(good["8k"], _tone(f8k, 8000, 1.0), 8000, subtype="PCM_24")
    facts["8k"] = f8k
    f96k, f_high = float(rng.uniform(500, 3500)), float(rng.uniform(9000, 20000))
    good["96k"] = root / "rate-96k.flac"
    sf.write(good["96k"], _tone(f96k, 96000, 1.0, 0.4) + _tone(f_high, 96000, 1.0, 0.4), 96000, subtype="PCM_24")
    facts["96k"] = (f96k, f_high)
    for fmt in ("ogg", "mp3"):
        freq = float(rng.uniform(300, 3000))
        good[fmt] = root / f"tone.{fmt}"
        sf.write(good[fmt], _tone(freq, 44100, 1.0), 44100)
        facts[fmt] = freq
    track = _tone(float(rng.uniform(200, 2000)), SR, 0.8) + rng.normal(0, 0.01, int(0.8 * SR)).astype(np.float32)
    (root / UNICODE_DIR).mkdir(exist_ok=True)
    good["unicode"] = root / UNICODE_DIR / "01 ♫ track.wav"
    sf.write(good["unicode"], track, SR, subtype="FLOAT")
    facts["unicode"] = track

    # -- broken -----------------------------------------------------------------------------
    clean = root / "clean.wav"
    sf.write(clean, _tone(440.0, SR, 1.0), SR, subtype="PCM_16")
    header = clean.read_bytes()
    bad["empty"] = root / "empty.wav"
    bad["empty"].write_bytes(b"")
    bad["truncated wav"] = _truncate(clean, root / "truncated.wav")
    bad["header only"] = _truncate(clean, root / "header-only.wav", 44 / len(header))
    bad["cut inside header"] = _truncate(clean, root / "cut-header.wav", 30 / len(header))
    bad["corrupt magic"] = root / "corrupt-magic.wav"
    bad["corrupt magic"].write_bytes(b"RIFX" + rng.bytes(40) + header[44:])
    bad["corrupt format"] = root / "corrupt-format.wav"
    bad["corrupt format"].write_bytes(header[:8] + b"XXXX" + header[12:])
    for name, value in (("nan", np.nan), ("inf", np.inf)):
        wave = _tone(440.0, SR, 0.5)
        wave[int(rng.integers(len(wave)))] = value
        bad[name] = root / f"{name}-sample.wav"
        sf.write(bad[name], wave, SR, subtype="FLOAT")
    for ext in ("wav", "mp3"):
        bad[f"text .{ext}"] = root / f"notes.{ext}"
        bad[f"text .{ext}"].write_text("not audio at all\n" * 200, encoding="utf-8")
    bad["random .flac"] = root / "noise-bytes.flac"
    bad["random .flac"].write_bytes(rng.bytes(6000))
    for fmt in ("flac", "ogg", "mp3"):
        full = root / f"full.{fmt}"
        sf.write(full, _tone(440.0, 44100, 2.0), 44100)
        bad[f"truncated {fmt}"] = _truncate(full, root / f"truncated.{fmt}")
        full.unlink()
    bad["folder"] = root / "a folder.wav"
    bad["folder"].mkdir()
    bad["missing"] = root / "never-written.wav"
    clean.unlink()
    return Corpus(root, good, bad, facts)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return _make_corpus(tmp_path_factory.mktemp("audio with spaces ü"))


def _peak_hz(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.argmax(spectrum) * rate / len(wave))


def _band_energy(wave: np.ndarray, rate: int, freq: float, width: float = 60.0) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave)))) ** 2
    freqs = np.fft.rfftfreq(len(wave), 1 / rate)
    return float(spectrum[np.abs(freqs - freq) < width].sum() / spectrum.sum())


# -- decode --------------------------------------------------------------------------------

def test_odd_files_decode_to_their_content(corpus: Corpus) -> None:
    g, facts = corpus.good, corpus.facts
    np.testing.assert_allclose(load(g["8ch-float"], SR), facts["8ch-float"], atol=1e-6)
    np.testing.assert_allclose(load(g["8ch-pcm16"], SR), facts["8ch-pcm16"], atol=1e-6)

    up = load(g["8k"], SR)  # 8 kHz -> 16 kHz: twice the samples, same pitch
    assert len(up) == 2 * 8000
    assert abs(_peak_hz(up, SR) - facts["8k"]) < 3

    down = load(g["96k"], SR)  # 96 kHz -> 16 kHz: the tone stays, the one above 8 kHz is filtered
    low, high = facts["96k"]
    assert len(down) == SR
    assert abs(_peak_hz(down, SR) - low) < 3
    alias = abs(SR * round(high / SR) - high)  # where `high` would fold to without a low-pass
    assert _band_energy(down, SR, low) > 0.95
    assert _band_energy(down, SR, alias) < 1e-4

    for fmt in ("ogg", "mp3"):  # lossy: the pitch survives, and about the length
        wave = load(g[fmt], SR)
        assert abs(len(wave) - SR) < 0.1 * SR, fmt
        assert abs(_peak_hz(wave, SR) - facts[fmt]) < 3, fmt

    np.testing.assert_allclose(load(g["unicode"], SR), facts["unicode"], atol=1e-7)


def test_broken_files_raise_naming_the_file(corpus: Corpus) -> None:
    for name, path in corpus.bad.items():
        with pytest.raises(BadAudioError) as caught:
            load(path, SR)
        assert caught.value.path == str(path), name
        assert str(path) in str(caught.value), name
        assert "\n" not in str(caught.value), name
    # the reasons say what is wrong, not only that something is
    reasons = {name: _reason(path) for name, path in corpus.bad.items()}
    assert "empty" in reasons["empty"]
    assert "truncated" in reasons["truncated wav"] and "truncated" in reasons["header only"]
    assert "truncated" in reasons["truncated mp3"]
    assert "NaN" in reasons["nan"] and "infinite" in reasons["inf"]
    assert "format not recognised" in reasons["text .mp3"]  # not libsndfile's "does not exist"
    assert reasons["missing"] == "no such file" and reasons["folder"] == "not a file"


def _reason(path: Path) -> str:
    try:
        load(path, SR)
    except BadAudioError as exc:
        return exc.reason
    raise AssertionError(f"{path} decoded")


# -- the embed stage -------------------------------------------------------------------------

def _manifest(corpus: Corpus, folder: Path, names: dict[str, Path], extra: int = 0) -> Path:
    """A CSV manifest of ``names`` plus ``extra`` plain tones (enough for a probe to fit)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    rng = np.random.default_rng()
    for i in range(extra):
        label = ("low", "high")[i % 2]
        path = folder / f"plain {i:02d}.wav"
        freq = rng.uniform(200, 400) if label == "low" else rng.uniform(2000, 3000)
        sf.write(path, _tone(freq, SR, 0.7), SR, subtype="PCM_16")
        rows.append((path, label, ("train", "train", "train", "train", "valid", "valid", "test", "test")[(i // 2) % 8]))
    for i, path in enumerate(names.values()):
        rows.append((path, ("low", "high")[i % 2], "train"))
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "split"])
        for path, label, split in rows:
            writer.writerow([os.path.relpath(path, folder), label, split])
    return manifest


def _embedder() -> Embedder:
    frontend = get_component("frontend", "mel", sample_rate=SR, n_fft=256, hop_length=128, n_mels=16)
    encoder = get_component("encoder", "mel-stats", n_features=16, n_mfcc=4)
    return Embedder(frontend, encoder, window=0.25, hop=0.25)


def test_embed_skips_each_bad_file_by_name(corpus: Corpus, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    manifest = _manifest(corpus, tmp_path / "task", {**corpus.good, **corpus.bad})
    task = get_component("task", "csv", path=str(manifest))
    store = tmp_path / "store.h5"
    summary = extract(_embedder(), task, store, {"test": "skip"}, on_bad_audio="skip", progress=False)
    bad_paths = {str(p.resolve()) for p in corpus.bad.values()}
    # clips are decoded once per content: bad files with the same bytes (two empty ones) are one clip
    contents = {p.read_bytes() if p.is_file() else str(p) for p in corpus.bad.values()}
    assert summary.skipped == len(contents) and summary.tracks == len(corpus.good)
    assert {b["path"] for b in summary.bad_files} <= bad_paths
    for path in {b["path"] for b in summary.bad_files}:
        assert path in caplog.text
    with EmbeddingStore(store) as opened:
        assert len(opened) == len(corpus.good)
        assert {s["path"] for s in opened.skipped} == bad_paths
        assert np.isfinite(opened.embeddings()).all()
        by_id = dict(zip(opened.ids, opened.embeddings()))
    # the unicode track's embedding is that of its decoded samples
    embedder = _embedder()
    wave = load(corpus.good["unicode"], SR)
    windows, _ = embedder.track_windows(torch.from_numpy(wave))
    expected = embedder.encoder(windows).mean(dim=0).detach().numpy()
    unicode_id = os.path.relpath(corpus.good["unicode"], tmp_path / "task")
    np.testing.assert_allclose(by_id[unicode_id], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["empty", "truncated wav", "corrupt magic", "nan", "text .mp3", "truncated ogg",
                                  "missing"])
def test_embed_fails_naming_the_bad_file(corpus: Corpus, tmp_path: Path, name: str) -> None:
    one_good = {"unicode": corpus.good["unicode"]}
    manifest = _manifest(corpus, tmp_path / "task", {**one_good, name: corpus.bad[name]})
    task = get_component("task", "csv", path=str(manifest))
    with pytest.raises(BadAudioError) as caught:
        extract(_embedder(), task, tmp_path / "store.h5", {"test": "fail"}, on_bad_audio="fail", progress=False)
    assert caught.value.path == str(corpus.bad[name].resolve())


# -- a real `musicrep run` -------------------------------------------------------------------

PIPELINE = """
[run]
name = "bad-audio"
device = "cpu"

[tasks.odd]
type = "csv"
path = "task/manifest.csv"

[models.stats]
frontend = {{ type = "mel", n_fft = 256, hop_length = 128, n_mels = 16 }}
encoder = {{ type = "mel-stats", n_features = 16, n_mfcc = 4 }}

[embed]
window = 0.25
hop = 0.25
on_bad_audio = "{policy}"

[probe]
probes = [{{ type = "knn", k_grid = [1] }}]
"""


def test_musicrep_run_skips_and_reports_every_bad_file(corpus: Corpus, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    _manifest(corpus, tmp_path / "task", {**corpus.good, **corpus.bad}, extra=16)
    toml = tmp_path / "pipeline.toml"
    toml.write_text(PIPELINE.format(policy="skip"), encoding="utf-8")
    assert main(["run", str(toml)]) == 0
    err = capsys.readouterr().err
    assert f"{len(corpus.good) + 16} tracks" in err and f"{len(corpus.bad)} skipped" in err
    summary_line = next(line for line in err.splitlines() if "skipped bad audio:" in line)
    for path in corpus.bad.values():
        assert str(path.resolve()) in summary_line
    with EmbeddingStore(tmp_path / "runs" / "bad-audio" / "embeddings" / "stats" / "odd.h5") as store:
        assert len(store.skipped) == len(corpus.bad) and len(store) == len(corpus.good) + 16
    assert (tmp_path / "runs" / "bad-audio" / "report.md").exists()


def test_musicrep_run_fails_on_the_first_bad_file_without_a_traceback(corpus: Corpus, tmp_path: Path) -> None:
    _manifest(corpus, tmp_path / "task", {"unicode": corpus.good["unicode"], "nan": corpus.bad["nan"]},
              extra=16)  # train, valid and test: a task the probes can use, or the config check refuses it
    toml = tmp_path / "pipeline.toml"
    toml.write_text(PIPELINE.format(policy="fail"), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "musicrep.cli", "run", str(toml)], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"musicrep: error: {corpus.bad['nan'].resolve()}: holds NaN" in proc.stderr
