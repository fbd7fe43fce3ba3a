"""musicrep.ops.mel_spectrogram (compiled) against its plain-PyTorch reference, and the reference
against librosa.

Tolerance: float32 outputs agree within 1e-4 of the reference output's largest magnitude. FFT
rounding error is absolute, proportional to the frame's energy, so it is measured against the
largest value rather than element by element (a near-empty band would make an elementwise
check test the noise floor, not the kernel). Log outputs are compared absolutely, 1e-4 times
max(1, largest magnitude): an absolute error of 1e-4 in ln x is a relative error of 1e-4 in x.
float64 runs are held to 1e-10.
"""
from __future__ import annotations

import math
import random

import librosa
import numpy as np
import pytest
import torch

from musicrep import ops
from musicrep._native import has_cuda_kernels, native as native_module
from musicrep.ops import reference

POW2 = [2, 4, 8, 16, 64, 128, 256, 512, 1024, 2048]
# plain DFT up to 32, Bluestein above (CPU)
OTHER = [1, 3, 5, 12, 15, 33, 100, 257, 400, 600]


def assert_close(actual: torch.Tensor, expected: torch.Tensor, log: str, tol: float, what: str) -> None:
    assert actual.shape == expected.shape, what
    scale = expected.abs().max().item()
    if log != "none":
        scale = max(scale, 1.0)
    err = (actual - expected).abs().max().item()
    assert err <= tol * max(scale, 1e-30), f"{what}: max error {err:.3g} vs scale {scale:.3g}"


def random_case(r: random.Random) -> dict:
    n_fft = r.choice(POW2 + OTHER)
    win_length = r.randint(1, n_fft)
    hop_length = r.randint(max(1, n_fft // 4), max(1, n_fft))
    center = r.random() < 0.7
    pad_mode = r.choice(["reflect", "constant", "replicate"])
    # short clips included: below n_fft when centred (reflect needs more than n_fft // 2)
    low = n_fft // 2 + 1 if center and pad_mode == "reflect" else (1 if center else n_fft)
    length = r.randint(low, max(low, 4 * n_fft)) if r.random() < 0.5 else r.randint(low, low + 3000)
    sample_rate = r.choice([8000, 16000, 22050, 44100])
    nyquist = sample_rate / 2
    f_max = r.choice([None, r.uniform(0.3, 1.0) * nyquist])
    f_min = r.uniform(0, 0.2) * (f_max or nyquist)
    log = r.choice(["none", "log", "db", "log1p", "log10p"])
    mel_scale = r.choice(["slaney", "htk"])
    # no empty filters (librosa warns of them): where a filter has no bin, an L_p normalisation
    # turns rounding-level weights (edges an ulp apart) into 1, which tests rounding, not the kernel
    n_mels = r.randint(1, 128)
    while n_mels > 1 and (reference.mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, mel_scale,
                                                   None, torch.float64).sum(1) == 0).any():
        n_mels //= 2
    return dict(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, win_length=win_length,
                n_mels=n_mels, f_min=f_min, f_max=f_max, power=r.choice([2.0, 1.0, 0.7]),
                center=center, pad_mode=pad_mode, mel_scale=mel_scale,
                norm=r.choice([None, "slaney", 1, 2, 3.5]), log=log,
                log_scale=10 ** r.uniform(0, 4), batch=r.randint(1, 3), length=length)


def run_case(case: dict, gen: torch.Generator, dtype: torch.dtype, tol: float, device: str = "cpu") -> None:
    case = dict(case)
    batch, length = case.pop("batch"), case.pop("length")
    gain = 10 ** torch.empty(batch, 1, dtype=torch.float64).uniform_(-2, 1, generator=gen)
    wave = (torch.randn(batch, length, generator=gen, dtype=torch.float64) * gain).to(dtype)
    if case["log"] in ("log", "db"):
        # a floor well above float32 rounding noise, so the check tests the kernel, not the noise
        linear = reference.mel_spectrogram(wave.double(), **{**case, "log": "none"})
        case["log_floor"] = max(1e-4 * linear.mean().item(), 1e-30)
    got = ops.mel_spectrogram(wave.to(device), **case).cpu()
    want = reference.mel_spectrogram(wave.double(), **case).to(dtype)
    assert_close(got, want, case["log"], tol, f"{dtype} {case} batch={batch} length={length}")


def test_compiled_matches_reference_random_float32(rng: torch.Generator) -> None:
    seed = int(torch.randint(0, 2**31, (1,), generator=rng))
    r = random.Random(seed)
    for _ in range(60):
        run_case(random_case(r), rng, torch.float32, 1e-4)


def test_compiled_matches_reference_random_float64(rng: torch.Generator) -> None:
    r = random.Random(int(torch.randint(0, 2**31, (1,), generator=rng)))
    for _ in range(25):
        run_case(random_case(r), rng, torch.float64, 1e-10)


@pytest.mark.parametrize("log", ["none", "log10p"])
def test_mule_settings(rng: torch.Generator, log: str) -> None:
    """MULE's front end: win 400 centred in n_fft 2048, hop 160, 96 HTK bands to 8 kHz, L2 filters."""
    wave = torch.randn(2, 16000, generator=rng)
    kw = dict(sample_rate=16000, n_fft=2048, win_length=400, hop_length=160, n_mels=96, f_max=8000.0,
              mel_scale="htk", norm=2, log=log, log_scale=1e4)
    got = ops.mel_spectrogram(wave, **kw)
    assert got.shape == (2, 96, 101)
    assert_close(got, reference.mel_spectrogram(wave.double(), **kw).float(), log, 1e-4, "mule")


def test_one_clip_and_top_db(rng: torch.Generator) -> None:
    wave = torch.randn(3000, generator=rng, dtype=torch.float64)
    kw = dict(sample_rate=16000, n_fft=256, n_mels=32, log="db", top_db=20.0)
    got = ops.mel_spectrogram(wave, **kw)
    assert got.shape == (32, 1 + 3000 // 64)
    assert_close(got, reference.mel_spectrogram(wave, **kw), "db", 1e-10, "top_db")
    assert got.max() - got.min() <= 20.0 + 1e-9


def test_log1p_keeps_tiny_energies() -> None:
    """log1p of energies far below float32's epsilon stays relative-accurate (not rounded to 0)."""
    wave = torch.zeros(1, 4096)
    wave[0, 2048] = 1e-10
    got = ops.mel_spectrogram(wave, sample_rate=16000, n_fft=512, n_mels=8, log="log1p")
    want = reference.mel_spectrogram(wave.double(), sample_rate=16000, n_fft=512, n_mels=8, log="log1p")
    assert want.max() > 0
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=0)


def test_gradient_matches_finite_differences(rng: torch.Generator) -> None:
    """The backward (the reference's) agrees with finite differences of the compiled forward."""
    wave = torch.randn(2, 40, generator=rng, dtype=torch.float64, requires_grad=True)
    for log in ("none", "log1p"):
        fn = lambda x: ops.mel_spectrogram(x, sample_rate=8000, n_fft=16, hop_length=5, n_mels=4, log=log)
        assert torch.autograd.gradcheck(fn, (wave,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("mel_scale", ["slaney", "htk"])
@pytest.mark.parametrize("norm", [None, "slaney", 1.0, 2.0])
def test_filters_match_librosa(mel_scale: str, norm: object) -> None:
    kw = dict(sr=22050, n_fft=1000, n_mels=60, fmin=30.0, fmax=9000.0, htk=mel_scale == "htk", norm=norm)
    want = torch.from_numpy(librosa.filters.mel(dtype=np.float64, **kw))
    for bank in (reference.mel_filterbank, ops.mel_filterbank):
        got = bank(22050, 1000, 60, 30.0, 9000.0, mel_scale, norm, dtype=torch.float64)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6 * want.abs().max().item())


def test_reference_matches_librosa(rng: torch.Generator) -> None:
    """The oracle itself: librosa.feature.melspectrogram with the same framing (window centred)."""
    wave = torch.randn(5000, generator=rng, dtype=torch.float64)
    want = librosa.feature.melspectrogram(y=wave.numpy(), sr=22050, n_fft=512, hop_length=100,
                                          win_length=300, center=True, pad_mode="constant",
                                          power=2.0, n_mels=40, htk=True, norm=2)
    got = reference.mel_spectrogram(wave, 22050, 512, 100, 300, 40, center=True, pad_mode="constant",
                                    mel_scale="htk", norm=2)
    torch.testing.assert_close(got, torch.from_numpy(want), rtol=0, atol=1e-6 * want.max())  # librosa rounds its filters to float32


GOOD = dict(sample_rate=16000, n_fft=64, n_mels=8)


@pytest.mark.parametrize("wave, kwargs, match", [
    (torch.zeros(2, 100, dtype=torch.int16), {}, "float32 or float64"),
    (torch.zeros(2, 100, dtype=torch.float16), {}, "float32 or float64"),
    (torch.zeros(2, 3, 100), {}, r"\[T\] or \[B, T\]"),
    (torch.zeros(0, 100), {}, "empty"),
    (torch.zeros(2, 0), {}, "empty"),
    (torch.tensor([[0.0, math.nan] * 50]), {}, "NaN or infinite"),
    (torch.tensor([[0.0, math.inf] * 50]), {}, "NaN or infinite"),
    ([0.0] * 100, {}, "torch.Tensor"),
    (torch.zeros(1, 50), {"center": False}, "fewer than n_fft"),
    (torch.zeros(1, 32), {}, "reflect padding"),
    (torch.zeros(1, 100), {"f_max": 8001.0}, "Nyquist"),
    (torch.zeros(1, 100), {"f_min": 500.0, "f_max": 400.0}, "f_min"),
    (torch.zeros(1, 100), {"win_length": 65}, "win_length"),
    (torch.zeros(1, 100), {"hop_length": 0}, "hop_length"),
    (torch.zeros(1, 100), {"hop_length": -3}, "hop_length"),
    (torch.zeros(1, 100), {"n_fft": 0}, "n_fft"),
    (torch.zeros(1, 100), {"n_mels": 0}, "n_mels"),
    (torch.zeros(1, 100), {"power": 0.0}, "power"),
    (torch.zeros(1, 100), {"pad_mode": "circular"}, "pad_mode"),
    (torch.zeros(1, 100), {"log": "ln"}, "log"),
    (torch.zeros(1, 100), {"log": "log", "log_floor": 0.0}, "log_floor"),
    (torch.zeros(1, 100), {"log": "log10p", "log_scale": -1.0}, "log_scale"),
    (torch.zeros(1, 100), {"top_db": 80.0}, "top_db"),
    (torch.zeros(1, 100), {"norm": "area"}, "norm"),
    (torch.zeros(1, 100), {"mel_scale": "bark"}, "mel_scale"),
    (torch.zeros(1, 100), {"sample_rate": -1}, "sample_rate"),
])
@pytest.mark.parametrize("op", [ops.mel_spectrogram, reference.mel_spectrogram], ids=["compiled", "reference"])
def test_bad_input_is_a_value_error(op, wave, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        op(wave, **{**GOOD, **kwargs})


def test_numpy_numbers_count_and_bools_do_not(rng: torch.Generator) -> None:
    """NumPy integers and floats are accepted wherever Python's are (a size read from an array or
    a config computed with NumPy); a truth value is never a size, a rate or a norm."""
    wave = torch.randn(1, 2000, generator=rng)
    kw = dict(sample_rate=np.int64(16000), n_fft=np.int64(255), hop_length=np.int32(64),
              win_length=np.int16(200), n_mels=np.uint8(20), norm=np.int64(2), f_max=np.float32(7000))
    plain = {k: v.item() for k, v in kw.items()}
    for op in (ops.mel_spectrogram, reference.mel_spectrogram):
        assert torch.equal(op(wave, **kw), op(wave, **plain))
    assert torch.equal(ops.mel_filterbank(np.int64(16000), np.int64(1023), np.int64(40)),
                       ops.mel_filterbank(16000, 1023, 40))
    for bad in (dict(n_fft=True), dict(n_mels=np.bool_(True)), dict(hop_length=False), dict(norm=True),
                dict(win_length=np.float64(200.0))):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ops.mel_spectrogram(wave, 16000, **bad)

@pytest.mark.parametrize("log", ["none", "log", "log1p"])
def test_empty_filters_give_zero_energy(rng: torch.Generator, log: str) -> None:
    """More bands than bins: empty filters come out as exactly 0 (or the floor), like the reference."""
    wave = torch.randn(2, 300, generator=rng)
    kw = dict(sample_rate=16000, n_fft=16, n_mels=40, f_max=7000.0, log=log, log_floor=1e-6)
    got = ops.mel_spectrogram(wave, **kw)
    want = reference.mel_spectrogram(wave.double(), **kw).float()
    empty = reference.mel_filterbank(16000, 16, 40, 0.0, 7000.0).sum(1) == 0
    assert empty.any() and (~empty).any()
    assert torch.equal(got[:, empty], want[:, empty])
    assert_close(got, want, log, 1e-4, "empty filters")


def test_huge_finite_samples_are_not_mistaken_for_inf() -> None:
    """The finiteness check's fast path (a finite sum) falls back to a full scan when the sum overflows."""
    wave = torch.full((1, 200), 3e38)
    out = ops.mel_spectrogram(wave, **GOOD)  # the energies overflow to inf; the input is valid
    assert out.shape == (1, 8, 1 + 200 // 16)


def test_short_clip_with_constant_padding(rng: torch.Generator) -> None:
    """Clips shorter than n_fft // 2 work with constant padding, as torch.stft does."""
    wave = torch.randn(2, 20, generator=rng)
    kw = dict(sample_rate=16000, n_fft=128, hop_length=8, n_mels=16, pad_mode="constant")
    got = ops.mel_spectrogram(wave, **kw)
    assert got.shape == (2, 16, 3)
    assert_close(got, reference.mel_spectrogram(wave.double(), **kw).float(), "none", 1e-4, "short")


@pytest.mark.cuda
def test_cuda_matches_reference(rng: torch.Generator) -> None:
    if not has_cuda_kernels():
        pytest.skip("musicrep._C was built without CUDA kernels")
    r = random.Random(int(torch.randint(0, 2**31, (1,), generator=rng)))
    for _ in range(30):
        case = random_case(r)
        run_case(case, rng, torch.float32, 1e-4, "cuda")
        run_case(case, rng, torch.float64, 1e-10, "cuda")


def _table_configs(r: random.Random, count: int) -> list[dict]:
    """``count`` configurations that each need their own tables (distinct n_fft)."""
    sizes = r.sample(POW2[2:] + OTHER[3:], count)
    return [dict(sample_rate=r.choice([8000, 16000, 22050]), n_fft=n, n_mels=r.randint(4, 24),
                 win_length=r.randint(max(1, n // 2), n), mel_scale=r.choice(["slaney", "htk"]),
                 norm=r.choice([None, "slaney", 2.0]), pad_mode="constant") for n in sizes]


def test_kept_tables_give_the_reference_results(rng: torch.Generator) -> None:
    """The tables kept per configuration serve later calls: configurations interleaved, cold and
    warm, agree with the reference (a mixed-up cache key would hand one the other's filters)."""
    native = native_module()
    r = random.Random(int(torch.randint(0, 2**31, (1,), generator=rng)))
    configs = _table_configs(r, 4)
    wave = torch.randn(2, 3000, generator=rng, dtype=torch.float64)
    native.mel_table_cache_clear()
    cold = [ops.mel_spectrogram(wave, **kw) for kw in configs]
    assert native.mel_table_cache_size() == len(configs)
    for kw, first in zip(configs[::-1] * 2, cold[::-1] * 2):
        warm = ops.mel_spectrogram(wave, **kw)
        assert torch.equal(warm, first), kw
        assert_close(warm, reference.mel_spectrogram(wave, **kw), "none", 1e-10, str(kw))
    # float32 keeps its own tables beside float64's
    ops.mel_spectrogram(wave.float(), **configs[0])
    assert native.mel_table_cache_size() == len(configs) + 1


def test_kept_tables_are_bounded(rng: torch.Generator) -> None:
    native = native_module()
    r = random.Random(int(torch.randint(0, 2**31, (1,), generator=rng)))
    wave = torch.randn(1, 2000, generator=rng)
    native.mel_table_cache_clear()
    configs = _table_configs(r, 12)
    for kw in configs:
        ops.mel_spectrogram(wave, **kw)
    assert native.mel_table_cache_size() == 8  # MelTableCache::kCapacity (per dtype)
    # the oldest were dropped and are rebuilt right
    assert_close(ops.mel_spectrogram(wave, **configs[0]),
                 reference.mel_spectrogram(wave.double(), **configs[0]).float(), "none", 1e-4, "rebuilt")


def test_threads_share_the_kept_tables(rng: torch.Generator) -> None:
    """Threads calling with overlapping configurations get what one thread gets."""
    from concurrent.futures import ThreadPoolExecutor

    native = native_module()
    r = random.Random(int(torch.randint(0, 2**31, (1,), generator=rng)))
    configs = _table_configs(r, 10) * 3
    wave = torch.randn(1, 2000, generator=rng)
    native.mel_table_cache_clear()
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda kw: ops.mel_spectrogram(wave, **kw), configs))
    native.mel_table_cache_clear()
    for kw, got in zip(configs, together):
        assert torch.equal(got, ops.mel_spectrogram(wave, **kw)), kw


@pytest.mark.cuda
def test_cuda_runs_on_the_current_stream(rng: torch.Generator) -> None:
    """On a side stream, with the kept tables made on another stream, the result is the reference's."""
    if not has_cuda_kernels():
        pytest.skip("musicrep._C was built without CUDA kernels")
    kw = dict(sample_rate=16000, n_fft=512, n_mels=40)
    wave = torch.randn(3, 8000, generator=rng).cuda()
    ops.mel_spectrogram(wave, **kw)  # the tables are made (on the default stream)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        got = ops.mel_spectrogram(wave, **kw)
    torch.cuda.current_stream().wait_stream(side)
    assert_close(got.cpu(), reference.mel_spectrogram(wave.cpu().double(), **kw).float(), "none", 1e-4, "side stream")
