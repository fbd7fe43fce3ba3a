"""musicrep.audio: decoding, resampling, mixing, bad-file handling and the numba kernels."""
from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest
import soundfile as sf

from musicrep import MusicrepError
from musicrep.audio import (AudioInfo, BadAudioError, BadAudioPolicy, crop, fit_length, frame, info,
                            load, mix_to_mono, pcm_to_float, pcm_to_mono, random_crop,
                            random_crop_starts, random_segment, resample)
from musicrep.audio import kernels, reference


@pytest.fixture
def nprng() -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence().entropy % 2**32)


def sine(freq: float, sr: int, seconds: float, phase: float = 0.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def peak_hz(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.shape[0])))
    return float(np.argmax(spectrum) * sr / x.shape[0])


def mp3_writable() -> bool:
    return "MP3" in sf.available_formats()


FORMATS = [("wav", "PCM_16"), ("wav", "PCM_24"), ("wav", "FLOAT"), ("flac", "PCM_16"), ("ogg", "VORBIS"),
           pytest.param("mp3", "MPEG_LAYER_III", marks=pytest.mark.skipif(
               not mp3_writable(), reason="this libsndfile cannot write mp3"))]
LOSSY = {"ogg", "mp3"}


@pytest.mark.parametrize("ext,subtype", FORMATS)
def test_decode_formats_mixes_and_resamples(tmp_path, nprng, ext, subtype):
    sr_in, sr_out = 22050, 16000
    f_left, f_right = nprng.uniform(300, 900), nprng.uniform(1200, 2500)
    stereo = np.stack([sine(f_left, sr_in, 1.0), sine(f_right, sr_in, 1.0)], axis=1)
    path = tmp_path / f"tone.{ext}"
    sf.write(path, stereo, sr_in, subtype=subtype)
    x = load(path, sr_out)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(x.shape[0] - sr_out) <= (1200 if ext in LOSSY else 2)  # mp3 adds encoder padding
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.shape[0])))
    hz = np.fft.rfftfreq(x.shape[0], 1 / sr_out)
    for f in (f_left, f_right):  # both channels survive the mix, at their own frequencies
        near = np.abs(hz - f) < 15
        assert spectrum[near].max() > 0.2 * spectrum.max()
    meta = info(path)
    assert isinstance(meta, AudioInfo)
    assert meta.sample_rate == sr_in and meta.channels == 2
    assert abs(meta.duration - 1.0) < (0.1 if ext in LOSSY else 1e-3)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_32", "FLOAT"])
def test_stereo_to_mono_is_the_channel_mean(tmp_path, nprng, subtype):
    sr = 8000
    stereo = nprng.uniform(-0.9, 0.9, size=(sr // 2, 2)).astype(np.float32)
    path = tmp_path / "noise.wav"
    sf.write(path, stereo, sr, subtype=subtype)
    stored = sf.read(path, dtype="float64")[0]  # after the format's quantisation
    x = load(path, sr)
    np.testing.assert_allclose(x, stored.mean(axis=1), atol=1e-6)


def test_resampling_keeps_a_sines_frequency(nprng):
    f = nprng.uniform(200, 3000)
    for sr_in, sr_out in [(44100, 16000), (16000, 48000), (22050, 24000)]:
        y = resample(sine(f, sr_in, 1.0), sr_in, sr_out)
        assert abs(y.shape[0] - sr_out) <= 1
        assert abs(peak_hz(y, sr_out) - f) < 2.0


def test_offset_and_duration_select_a_segment(tmp_path, nprng):
    sr = 16000
    x = nprng.uniform(-0.5, 0.5, size=3 * sr).astype(np.float32)
    path = tmp_path / "x.flac"
    sf.write(path, x, sr, subtype="PCM_24")
    stored = sf.read(path, dtype="float32")[0]
    seg = load(path, sr, offset=1.25, duration=0.5)
    np.testing.assert_allclose(seg, stored[int(1.25 * sr): int(1.75 * sr)], atol=1e-6)
    tail = load(path, sr, offset=2.5, duration=2.0)  # runs past the end: shorter, not padded
    assert tail.shape[0] == sr // 2
    with pytest.raises(BadAudioError, match="past the end"):
        load(path, sr, offset=5.0)


def test_random_segment_decodes_a_window_of_the_file(tmp_path, nprng):
    sr = 8000
    ramp = (np.arange(2 * sr) / (4 * sr)).astype(np.float32)  # each sample tells its position
    path = tmp_path / "ramp.wav"
    sf.write(path, ramp, sr, subtype="FLOAT")
    starts = set()
    for _ in range(5):
        seg = random_segment(path, sr, 0.5, nprng)
        assert seg.shape == (sr // 2,)
        start = int(round(seg[0] * 4 * sr))
        np.testing.assert_allclose(seg, ramp[start:start + sr // 2], atol=1e-7)
        starts.add(start)
    assert len(starts) > 1
    short = random_segment(path, sr, 3.0, nprng)  # longer than the file: padded
    assert short.shape == (3 * sr,) and not short[2 * sr:].any()


def test_bad_files_are_named(tmp_path):
    sr = 16000
    cases = {}
    cases["missing"] = tmp_path / "nope.wav"
    (tmp_path / "empty.wav").write_bytes(b"")
    cases["empty"] = tmp_path / "empty.wav"
    (tmp_path / "text.mp3").write_text("this is not audio at all\n" * 20)
    cases["text"] = tmp_path / "text.mp3"
    sf.write(tmp_path / "header_only.wav", np.zeros((0, 1), np.float32), sr)
    cases["no frames"] = tmp_path / "header_only.wav"
    nan = np.zeros(1000, np.float32)
    nan[500] = np.nan
    sf.write(tmp_path / "nan.wav", nan, sr, subtype="FLOAT")
    cases["nan"] = tmp_path / "nan.wav"
    good = tmp_path / "good.wav"
    sf.write(good, np.zeros(1000, np.float32), sr)
    truncated = tmp_path / "truncated.flac"
    sf.write(truncated, np.random.default_rng(0).uniform(-1, 1, 20000).astype(np.float32), sr)
    truncated.write_bytes(truncated.read_bytes()[:200])
    cases["truncated"] = truncated
    cases["folder"] = tmp_path
    for what, path in cases.items():
        with pytest.raises(BadAudioError) as err:
            load(path, sr)
        assert str(path) in str(err.value), what
        assert isinstance(err.value, MusicrepError)
        assert err.value.path == str(path)
    for path in (cases["missing"], cases["empty"], cases["text"], cases["no frames"]):
        with pytest.raises(BadAudioError, match=str(path)):
            info(path)
    assert load(good, sr).shape == (1000,)


def test_bad_audio_error_pickles_intact():
    err = pickle.loads(pickle.dumps(BadAudioError("/x/y.wav", "empty")))
    assert isinstance(err, BadAudioError) and err.path == "/x/y.wav" and err.reason == "empty"
    assert str(err) == "/x/y.wav: empty"


def test_argument_errors_name_the_argument(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, np.zeros(100, np.float32), 8000)
    for kwargs, name in [({"sample_rate": 0}, "sample_rate"), ({"sample_rate": 8000, "offset": -1}, "offset"),
                         ({"sample_rate": 8000, "duration": 0}, "duration")]:
        with pytest.raises(ValueError, match=name):
            load(path, **kwargs)


def write_bad_and_good(tmp_path) -> list:
    sf.write(tmp_path / "ok1.wav", np.zeros(100, np.float32), 8000)
    sf.write(tmp_path / "ok2.wav", np.zeros(100, np.float32), 8000)
    (tmp_path / "bad1.wav").write_bytes(b"RIFF")
    (tmp_path / "bad2.ogg").write_text("garbage")
    return [tmp_path / n for n in ("ok1.wav", "bad1.wav", "ok2.wav", "bad2.ogg")]


def test_policy_skip_counts_and_logs_each_file(tmp_path, caplog):
    paths = write_bad_and_good(tmp_path)
    policy = BadAudioPolicy("skip")
    with caplog.at_level(logging.WARNING, logger="musicrep.audio"):
        out = [policy.load(p, 8000) for p in paths]
    assert [o is None for o in out] == [False, True, False, True]
    assert policy.count == 2
    assert [e.path for e in policy.skipped] == [str(paths[1]), str(paths[3])]
    for p in (paths[1], paths[3]):
        assert str(p) in caplog.text
        assert str(p) in policy.summary()
    assert "2" in policy.summary()
    assert BadAudioPolicy().summary() == "bad audio files: none"


def test_policy_fail_raises_at_the_first_bad_file(tmp_path):
    paths = write_bad_and_good(tmp_path)
    policy = BadAudioPolicy("fail")
    assert policy.load(paths[0], 8000) is not None
    with pytest.raises(BadAudioError, match="bad1.wav"):
        policy.load(paths[1], 8000)
    assert policy.count == 0
    with pytest.raises(ValueError, match="on_bad_audio"):
        BadAudioPolicy("ignore")


def test_policy_call_wraps_any_loader(tmp_path):
    policy = BadAudioPolicy("skip")

    def loader(name):
        raise BadAudioError(tmp_path / name, "holds NaN or infinite samples")

    assert policy.call(loader, "n.wav") is None
    assert policy.skipped[0].path.endswith("n.wav")
    with pytest.raises(KeyError):  # other errors are bugs, not bad audio: they propagate
        policy.call(lambda: {}["x"])


# -- kernels against their NumPy twins ------------------------------------------------------
@pytest.mark.parametrize("n,window,hop", [(1, 4, 2), (10, 4, 2), (11, 4, 3), (16000, 4000, 1000),
                                          (16001, 4000, 1000), (100, 100, 7), (3, 10, 5), (1000, 64, 64)])
def test_frame_matches_numpy(nprng, n, window, hop):
    x = nprng.standard_normal(n).astype(np.float32)
    got = frame(x, window, hop)
    want = reference.frame(x, window, hop)
    np.testing.assert_array_equal(got, want)
    assert got.shape == (kernels.n_frames(n, window, hop), window)
    assert (got.shape[0] - 1) * hop < max(n, 1) <= (got.shape[0] - 1) * hop + window  # covers, no extra frame
    for i in range(got.shape[0]):  # each frame is the wave from i*hop, zero past the end
        seg = x[i * hop: i * hop + window]
        np.testing.assert_array_equal(got[i, : seg.shape[0]], seg)
        assert not got[i, seg.shape[0]:].any()


def test_crop_matches_numpy(nprng):
    for _ in range(5):
        n = int(nprng.integers(1, 5000))
        length = int(nprng.integers(1, 3000))
        x = nprng.standard_normal(n).astype(np.float32)
        starts = random_crop_starts(n, length, 7, nprng)
        assert starts.min() >= 0 and starts.max() <= max(n - length, 0)
        np.testing.assert_array_equal(crop(x, starts, length), reference.crop(x, starts, length))
        tail = np.array([n - 1])  # a crop at the last sample is zero-padded
        np.testing.assert_array_equal(crop(x, tail, length), reference.crop(x, tail, length))


def test_random_crop_is_a_window_of_the_wave(nprng):
    x = np.arange(1000, dtype=np.float32)
    c = random_crop(x, 100, nprng)
    assert c.shape == (100,) and np.all(np.diff(c) == 1) and 0 <= c[0] <= 900
    short = random_crop(np.ones(10, np.float32), 50, nprng)
    assert short[:10].sum() == 10 and not short[10:].any()
    np.testing.assert_array_equal(fit_length(x, 10), x[:10])
    np.testing.assert_array_equal(fit_length(x[:5], 8), np.r_[x[:5], 0, 0, 0])


@pytest.mark.parametrize("n", [1, 7, 50, 99, 100, 101, 1000])
def test_tiled_random_crop_repeats_a_short_wave(nprng, n):
    """``short="tile"`` (pre-training's crops): a short clip repeated to fill the crop, then cut
    at a uniform start of the repeated wave, drawn exactly as ``np.tile`` + ``rng.integers``."""
    x = nprng.standard_normal(n).astype(np.float32)
    seed = int(nprng.integers(2**32))
    got = random_crop(x, 100, np.random.default_rng(seed), short="tile")
    tiled = np.tile(x, -(-100 // n)) if n < 100 else x
    start = int(np.random.default_rng(seed).integers(0, len(tiled) - 100 + 1))
    np.testing.assert_array_equal(got, tiled[start:start + 100])
    assert got.shape == (100,) and np.all(np.isin(got, x))
    with pytest.raises(ValueError, match="short must be"):
        random_crop(x, 100, nprng, short="wrap")


@pytest.mark.parametrize("dtype", [np.int16, np.int32])
@pytest.mark.parametrize("channels", [1, 2, 3])
def test_pcm_kernels_match_numpy(nprng, dtype, channels):
    info_ = np.iinfo(dtype)
    x = nprng.integers(info_.min, info_.max, size=(777, channels), endpoint=True).astype(dtype)
    x[0, 0], x[1, 0] = info_.min, info_.max  # full scale both ways
    np.testing.assert_allclose(pcm_to_float(x), reference.pcm_to_float(x), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(pcm_to_mono(x), reference.pcm_to_mono(x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(pcm_to_float(x[:, 0]), reference.pcm_to_float(x[:, 0]), rtol=1e-7)
    assert pcm_to_float(x).min() == -1.0 and pcm_to_float(x).max() <= 1.0  # int32 max rounds to 1 in float32
    f = reference.pcm_to_float(x)
    np.testing.assert_allclose(mix_to_mono(f), reference.mix_to_mono(f), rtol=1e-6, atol=1e-7)


def test_kernel_arguments_are_checked():
    x = np.zeros(100, np.float32)
    for call, name in [(lambda: frame(x, 0, 1), "window"), (lambda: frame(x, 4, -1), "hop"),
                       (lambda: frame(np.zeros((2, 2)), 4, 1), "1-D"), (lambda: frame(x[:0], 4, 1), "empty"),
                       (lambda: crop(x, np.array([100]), 4), "starts"),
                       (lambda: pcm_to_float(np.zeros(4, np.float32)), "int16"),
                       (lambda: mix_to_mono(np.zeros((4, 2), np.int16)), "pcm_to_mono")]:
        with pytest.raises(ValueError, match=name):
            call()


def test_without_numba_the_numpy_twins_serve(monkeypatch, nprng):
    x = nprng.integers(-32768, 32767, size=(500, 2)).astype(np.int16)
    compiled = (pcm_to_mono(x), pcm_to_float(x), mix_to_mono(pcm_to_float(x)))
    monkeypatch.setattr(kernels, "HAVE_NUMBA", False)
    fallback = (pcm_to_mono(x), pcm_to_float(x), mix_to_mono(pcm_to_float(x)))
    for a, b in zip(compiled, fallback):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
