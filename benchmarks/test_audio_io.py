"""Data-loader work per item: decode + resample, PCM mixing, framing and crops, beside the peers.

Run: pytest benchmarks/test_audio_io.py --benchmark-enable -q --benchmark-group-by=group
"""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from musicrep.audio import crop, frame, load, pcm_to_mono, reference

SR_FILE, SR = 44100, 16000


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    """30 s of 16-bit stereo at 44.1 kHz, the shape of a typical catalog file."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("bench") / "song.wav"
    sf.write(path, rng.uniform(-0.5, 0.5, size=(30 * SR_FILE, 2)).astype(np.float32), SR_FILE, subtype="PCM_16")
    return path


@pytest.mark.benchmark(group="decode 30 s stereo wav 44.1k -> mono 16k")
def test_decode_musicrep(benchmark, song):
    benchmark(load, song, SR)


@pytest.mark.benchmark(group="decode 30 s stereo wav 44.1k -> mono 16k")
def test_decode_librosa(benchmark, song):
    librosa = pytest.importorskip("librosa")
    benchmark(librosa.load, song, sr=SR, mono=True, res_type="soxr_hq")


@pytest.fixture(scope="module")
def pcm():
    return np.random.default_rng(1).integers(-32768, 32767, size=(30 * SR_FILE, 2)).astype(np.int16)


@pytest.mark.benchmark(group="int16 stereo -> float mono, 30 s 44.1k")
def test_pcm_musicrep_numba(benchmark, pcm):
    benchmark(pcm_to_mono, pcm)


@pytest.mark.benchmark(group="int16 stereo -> float mono, 30 s 44.1k")
def test_pcm_numpy(benchmark, pcm):
    benchmark(reference.pcm_to_mono, pcm)


@pytest.mark.benchmark(group="int16 stereo -> float mono, 30 s 44.1k")
def test_pcm_numpy_float32(benchmark, pcm):
    benchmark(lambda x: (x.astype(np.float32) / 32768.0).mean(axis=1), pcm)


@pytest.fixture(scope="module")
def wave():
    return np.random.default_rng(2).standard_normal(30 * SR + 123).astype(np.float32)


@pytest.mark.benchmark(group="frame 30 s at 16k: 3 s windows, 2 s hop")
def test_frame_musicrep(benchmark, wave):
    benchmark(frame, wave, 3 * SR, 2 * SR)


@pytest.mark.benchmark(group="frame 30 s at 16k: 3 s windows, 2 s hop")
def test_frame_numpy(benchmark, wave):
    benchmark(reference.frame, wave, 3 * SR, 2 * SR)


@pytest.mark.benchmark(group="frame 30 s at 16k: 3 s windows, 2 s hop")
def test_frame_torch_unfold(benchmark, wave):
    def unfold(x):
        n = reference.n_frames(x.shape[0], 3 * SR, 2 * SR)
        padded = torch.nn.functional.pad(torch.from_numpy(x), (0, (n - 1) * 2 * SR + 3 * SR - x.shape[0]))
        return padded.unfold(0, 3 * SR, 2 * SR).contiguous()
    benchmark(unfold, wave)


@pytest.mark.benchmark(group="frame 30 s at 16k: 3 s windows, 2 s hop")
def test_frame_librosa(benchmark, wave):
    librosa = pytest.importorskip("librosa")

    def lframe(x):
        n = reference.n_frames(x.shape[0], 3 * SR, 2 * SR)
        padded = np.pad(x, (0, (n - 1) * 2 * SR + 3 * SR - x.shape[0]))
        return np.ascontiguousarray(librosa.util.frame(padded, frame_length=3 * SR, hop_length=2 * SR, axis=0))
    benchmark(lframe, wave)


@pytest.mark.benchmark(group="64 random 3 s crops of 30 s at 16k")
def test_crops_musicrep(benchmark, wave):
    starts = np.random.default_rng(3).integers(0, wave.shape[0] - 3 * SR, size=64)
    benchmark(crop, wave, starts, 3 * SR)


@pytest.mark.benchmark(group="64 random 3 s crops of 30 s at 16k")
def test_crops_numpy(benchmark, wave):
    starts = np.random.default_rng(3).integers(0, wave.shape[0] - 3 * SR, size=64)
    benchmark(reference.crop, wave, starts, 3 * SR)


@pytest.mark.benchmark(group="64 random 3 s crops of 30 s at 16k")
def test_crops_numpy_slices(benchmark, wave):
    starts = np.random.default_rng(3).integers(0, wave.shape[0] - 3 * SR, size=64)
    benchmark(lambda x: np.stack([x[s:s + 3 * SR] for s in starts]), wave)
