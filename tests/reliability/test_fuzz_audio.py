"""Fuzz: audio files (random bytes, truncated, mutated valid WAV/FLAC, wrong headers, absurd rates)
through ``musicrep.audio.load`` and ``info``; header bombs refused before decoding; clips the model
cannot embed (shorter than half its FFT, or so loud its embedding is not finite) skipped by name."""
from __future__ import annotations

import csv
import functools
import io
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import FUZZ, bytes_or_mutation, returns_or_one_line
from musicrep import get_component
from musicrep.audio import BadAudioError, decode, info, load
from musicrep.embed import extract
from musicrep.model import Embedder
from musicrep.store import EmbeddingStore

SR = 16000


@functools.cache
def valid(fmt: str, subtype: str) -> bytes:
    rng = np.random.default_rng(len(fmt) + len(subtype))
    buffer = io.BytesIO()
    sf.write(buffer, rng.uniform(-0.5, 0.5, size=(2000, 2)).astype(np.float32), 22050, format=fmt, subtype=subtype)
    return buffer.getvalue()


KINDS = [("WAV", "PCM_16"), ("WAV", "FLOAT"), ("FLAC", "PCM_24"), ("WAV", "PCM_24")]


def wav_header(rate: int, frames: int, channels: int = 1, bits: int = 16, data: bytes | None = None) -> bytes:
    """A RIFF/WAVE file claiming ``rate`` Hz and ``frames`` frames (the data as given, or whole)."""
    block = channels * bits // 8
    payload = bytes(frames * block) if data is None else data
    fmt = struct.pack("<HHIIHH", 1, channels, rate, (rate * block) & 0xFFFFFFFF, block, bits)
    return (b"RIFF" + struct.pack("<I", 36 + len(payload)) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", len(payload)) + payload)


def check_wave(wave: np.ndarray | None) -> None:
    if wave is not None:
        assert wave.dtype == np.float32 and wave.ndim == 1 and len(wave) > 0 and np.isfinite(wave).all()


@FUZZ
@given(kind=st.sampled_from(KINDS), data=st.data(), suffix=st.sampled_from([".wav", ".flac", ".mp3", ".ogg"]),
       rate=st.sampled_from([8000, 16000, 44100]))
def test_decoding_returns_clean_audio_or_names_the_file(kind: tuple[str, str], data: st.DataObject, suffix: str,
                                                        rate: int) -> None:
    content = data.draw(bytes_or_mutation(valid(*kind)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"track{suffix}"
        path.write_bytes(content)
        check_wave(returns_or_one_line(lambda: load(path, rate), path))
        returns_or_one_line(lambda: info(path), path)


@FUZZ
@given(rate=st.integers(0, 2**32 - 1), frames=st.integers(1, 4096), channels=st.integers(1, 16),
       bits=st.sampled_from([8, 16, 24, 32]))
def test_any_wav_header_decodes_or_names_the_file(rate: int, frames: int, channels: int, bits: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "header.wav"
        path.write_bytes(wav_header(rate, frames, channels, bits))
        wave = returns_or_one_line(lambda: load(path, SR), path)
        check_wave(wave)
        if wave is not None:
            assert decode.MIN_SAMPLE_RATE <= rate <= decode.MAX_SAMPLE_RATE


@pytest.mark.parametrize("rate", [1, 999, 768_001])
def test_an_absurd_sample_rate_is_refused_before_decoding(tmp_path: Path, rate: int) -> None:
    path = tmp_path / "bomb.wav"
    path.write_bytes(wav_header(rate, 20_000))  # 40 KB: at 1 Hz, 320 million samples at 16 kHz
    for read in (lambda: load(path, SR), lambda: info(path)):
        with pytest.raises(BadAudioError, match=f"{path}: its header says {rate} Hz"):
            read()


def test_a_decode_beyond_the_sample_bound_is_refused_before_decoding(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng()
    frames = int(rng.integers(5000, 20000))
    path = tmp_path / "long.flac"
    sf.write(path, np.zeros((frames, 2), np.float32), 8000, subtype="PCM_16")
    monkeypatch.setattr(decode, "MAX_SAMPLES", frames)  # 2 channels at 8 kHz: 2 x frames read, 2 x frames at 16k
    reads, read_blocks = [], decode._read_blocks
    monkeypatch.setattr(decode, "_read_blocks", lambda *a: reads.append(a) or read_blocks(*a))
    with pytest.raises(BadAudioError, match=f"{path}: too large to decode"):
        load(path, SR)
    assert not reads  # refused from the header
    assert len(load(path, SR, duration=frames / 4 / 8000)) == pytest.approx(frames / 2, abs=2)  # a segment fits


@pytest.mark.parametrize("scale", [1e38, 3e38])
def test_samples_too_large_to_resample_are_named_not_nan(tmp_path: Path, scale: float) -> None:
    """Found by the soak: finite float samples near the float32 limit overflow the resampler."""
    path = tmp_path / "loud.wav"
    rng = np.random.default_rng()
    sf.write(path, (scale * rng.uniform(-1, 1, 4000)).astype(np.float32), 22050, subtype="FLOAT")
    with pytest.raises(BadAudioError, match=f"{path}: samples too large to resample"):
        load(path, SR)


def test_decoding_streams_a_file_longer_than_one_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng()
    wave = rng.uniform(-0.5, 0.5, size=int(rng.integers(3000, 5000))).astype(np.float32)
    path = tmp_path / "blocks.wav"
    sf.write(path, wave, SR, subtype="FLOAT")
    monkeypatch.setattr(decode, "BLOCK_FRAMES", 1000)
    np.testing.assert_array_equal(load(path, SR), wave)


# -- clips the model cannot embed --------------------------------------------------------------------

def embedder() -> Embedder:
    frontend = get_component("frontend", "mel", sample_rate=SR, n_fft=512, hop_length=128, n_mels=16)
    return Embedder(frontend, get_component("encoder", "fcn", channels=[4], dim=8), window=0.25, hop=0.25)


def manifest(folder: Path, rng: np.random.Generator) -> tuple[Path, dict[str, Path]]:
    rows, bad = [], {}
    for i in range(6):
        path = folder / f"plain{i}.wav"
        sf.write(path, rng.uniform(-0.3, 0.3, SR // 2).astype(np.float32), SR, subtype="FLOAT")
        rows.append((path.name, ("a", "b")[i % 2]))
    bad["short"] = folder / "short.wav"  # shorter than half the FFT (256 samples)
    sf.write(bad["short"], rng.uniform(-0.3, 0.3, int(rng.integers(1, 256))).astype(np.float32), SR, subtype="FLOAT")
    bad["loud"] = folder / "loud.wav"  # finite samples, an overflowing model
    sf.write(bad["loud"], rng.uniform(1e37, 3e38, SR // 2).astype(np.float32), SR, subtype="FLOAT")
    rows += [(p.name, "a") for p in bad.values()]
    path = folder / "manifest.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([("path", "label"), *rows])
    return path, bad


@pytest.mark.parametrize("policy", ["skip", "fail"])
def test_clips_the_model_cannot_embed_are_bad_audio_named(tmp_path: Path, policy: str) -> None:
    path, bad = manifest(tmp_path, np.random.default_rng())
    task = get_component("task", "csv", path=str(path))
    store = tmp_path / "store.h5"
    if policy == "fail":
        with pytest.raises(BadAudioError) as caught:
            extract(embedder(), task, store, {"x": 1}, on_bad_audio="fail", progress=False, num_workers=0)
        assert caught.value.path in {str(p.resolve()) for p in bad.values()} and "\n" not in str(caught.value)
        return
    summary = extract(embedder(), task, store, {"x": 1}, on_bad_audio="skip", progress=False, num_workers=0)
    assert {b["path"] for b in summary.bad_files} == {str(p.resolve()) for p in bad.values()}
    assert summary.skipped == 2 and summary.tracks == 6
    with EmbeddingStore(store) as opened:
        assert len(opened) == 6 and np.isfinite(opened.embeddings()).all()
        # the store is finished with them listed: a rerun finds it complete and does not try them again
        assert {s["path"] for s in opened.skipped} == {str(p.resolve()) for p in bad.values()}
