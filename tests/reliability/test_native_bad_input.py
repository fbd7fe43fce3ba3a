"""Bad input to the native ops, through the public API and straight into torch.ops.musicrep.

Every bad call must raise a Python exception with a message that says what is wrong; none
may crash the interpreter. A segfault would take pytest down with it, so the bad calls run in
one child process (``python THIS_FILE CASE ...``) that reports each outcome as a JSON line; a
child that dies is restarted after the case that killed it, which is then reported as a crash.
Odd but valid layouts (transposed, strided, expanded, half precision) run here and must equal
the op on a contiguous copy and the plain-PyTorch reference. ``make asan-test`` runs this file
under AddressSanitizer + UBSan.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Callable

import pytest
import torch

from musicrep import ops
from musicrep.ops import reference

F64 = torch.float64


def _c():
    from musicrep._native import native_ops

    return native_ops()


def _mel(wave: object, **kw) -> torch.Tensor:
    return ops.mel_spectrogram(wave, 16000, **{"n_fft": 256, "n_mels": 16, **kw})


def _raw_mel(wave: torch.Tensor, **kw) -> torch.Tensor:
    a = dict(n_fft=256, hop_length=64, win_length=256, n_mels=16, sample_rate=16000.0, f_min=0.0,
             f_max=8000.0, htk=False, norm_p=-1.0, power=2.0, center=True, pad_mode=0, log_mode=0,
             log_floor=1e-10, log_scale=1.0)
    a.update(kw)
    a.setdefault("check_finite", True)
    return _c().mel_spectrogram(wave, **a)


def _raw_fb(**kw) -> torch.Tensor:
    a = dict(n_mels=16, n_fft=512, sample_rate=16000.0, f_min=0.0, f_max=8000.0, htk=False, norm_p=-1.0)
    a.update(kw)
    return _c().mel_filterbank(**a)


def _raw_rs(x: torch.Tensor | None = None, ratio: object = 1.5, start: object = 0.0, out_len: int = 100,
            zeros: int = 8) -> torch.Tensor:
    x = torch.randn(2, 100) if x is None else x
    r = ratio if isinstance(ratio, torch.Tensor) else torch.full((x.shape[0],), float(ratio), dtype=F64)
    s = start if isinstance(start, torch.Tensor) else torch.full((x.shape[0],), float(start), dtype=F64)
    return _c().resample_shift(x, r, s, out_len, zeros)


def _z(*shape: int, **kw) -> torch.Tensor:
    return torch.randn(*shape, **kw)


W = 1000  # samples of a bad-argument wave
NAN = float("nan")

# name -> (call, exception types, words the message must contain (lower case))
CASES: dict[str, tuple[Callable[[], object], tuple[type, ...], tuple[str, ...]]] = {
    # -- musicrep.ops.mel_spectrogram ------------------------------------------------------
    "mel: int32 wave": (lambda: _mel(torch.ones(1, W, dtype=torch.int32)), (ValueError,), ("float32", "int32")),
    "mel: bool wave": (lambda: _mel(torch.ones(1, W, dtype=torch.bool)), (ValueError,), ("float32", "bool")),
    "mel: float16 wave": (lambda: _mel(_z(1, W).half()), (ValueError,), ("float32", "float16")),
    "mel: complex wave": (lambda: _mel(_z(1, W, dtype=torch.complex64)), (ValueError,), ("float32", "complex")),
    "mel: meta wave": (lambda: _mel(_z(1, W, device="meta")), (ValueError,), ("meta",)),
    "mel: list wave": (lambda: _mel([0.0] * W), (ValueError,), ("torch.tensor",)),
    "mel: 0-d wave": (lambda: _mel(torch.tensor(1.0)), (ValueError,), ("shape",)),
    "mel: 3-d wave": (lambda: _mel(_z(1, 1, W)), (ValueError,), ("[b, t]",)),
    "mel: empty batch": (lambda: _mel(_z(0, W)), (ValueError,), ("empty",)),
    "mel: zero length": (lambda: _mel(_z(2, 0)), (ValueError,), ("empty",)),
    "mel: zero length 1-d": (lambda: _mel(_z(0)), (ValueError,), ("empty",)),
    "mel: nan sample": (lambda: _mel(torch.cat([_z(1, W), torch.full((1, 1), NAN)], 1)), (ValueError,), ("nan",)),
    "mel: huge n_fft reflect": (lambda: _mel(_z(1, W), n_fft=2**24), (ValueError,), ("n_fft",)),
    "mel: huge n_fft constant": (lambda: _mel(_z(1, W), n_fft=2**24, pad_mode="constant"), (ValueError,), ("n_fft", "at most")),
    "mel: n_fft 2**62": (lambda: _mel(_z(1, W), n_fft=2**62, pad_mode="constant"), (ValueError,), ("n_fft",)),
    "mel: n_fft 0": (lambda: _mel(_z(1, W), n_fft=0), (ValueError,), ("n_fft",)),
    "mel: n_fft float": (lambda: _mel(_z(1, W), n_fft=256.0), (ValueError,), ("n_fft",)),
    "mel: hop 0": (lambda: _mel(_z(1, W), hop_length=0), (ValueError,), ("hop_length",)),
    "mel: n_mels 0": (lambda: _mel(_z(1, W), n_mels=0), (ValueError,), ("n_mels",)),
    "mel: win > n_fft": (lambda: _mel(_z(1, W), win_length=512), (ValueError,), ("win_length",)),
    "mel: sample_rate nan": (lambda: ops.mel_spectrogram(_z(1, W), NAN), (ValueError,), ("sample_rate",)),
    "mel: f_max > nyquist": (lambda: _mel(_z(1, W), f_max=9000.0), (ValueError,), ("f_max", "nyquist")),
    "mel: power nan": (lambda: _mel(_z(1, W), power=NAN), (ValueError,), ("power",)),
    "mel: center 1": (lambda: _mel(_z(1, W), center=1), (ValueError,), ("center",)),
    "mel: short clip uncentered": (lambda: _mel(_z(1, 100), center=False), (ValueError,), ("n_fft",)),
    "mel: top_db without db": (lambda: _mel(_z(1, W), top_db=80.0), (ValueError,), ("top_db",)),
    # -- musicrep.ops.mel_filterbank -------------------------------------------------------
    "filterbank: n_fft 0": (lambda: ops.mel_filterbank(16000, 0, 16), (ValueError,), ("n_fft",)),
    "filterbank: n_fft 2**40": (lambda: ops.mel_filterbank(16000, 2**40, 16), (ValueError,), ("n_fft",)),
    "filterbank: n_mels -1": (lambda: ops.mel_filterbank(16000, 512, -1), (ValueError,), ("n_mels",)),
    "filterbank: f_min >= f_max": (lambda: ops.mel_filterbank(16000, 512, 16, f_min=900.0, f_max=800.0), (ValueError,), ("f_min",)),
    "filterbank: norm bad": (lambda: ops.mel_filterbank(16000, 512, 16, norm="l2"), (ValueError,), ("norm",)),
    "filterbank: int dtype": (lambda: ops.mel_filterbank(16000, 512, 16, dtype=torch.int32), (ValueError,), ("dtype",)),
    # -- musicrep.ops.nt_xent --------------------------------------------------------------
    "nt_xent: int64": (lambda: ops.nt_xent(torch.ones(4, 3, dtype=torch.int64), torch.ones(4, 3, dtype=torch.int64), 0.1), (ValueError,), ("z1", "int64")),
    "nt_xent: complex": (lambda: ops.nt_xent(_z(4, 3, dtype=torch.complex64), _z(4, 3, dtype=torch.complex64), 0.1), (ValueError,), ("z1", "complex")),
    "nt_xent: meta": (lambda: ops.nt_xent(_z(4, 3, device="meta"), _z(4, 3, device="meta"), 0.1), (ValueError,), ("meta",)),
    "nt_xent: rows differ": (lambda: ops.nt_xent(_z(4, 3), _z(5, 3), 0.1), (ValueError,), ("same shape",)),
    "nt_xent: dims differ": (lambda: ops.nt_xent(_z(4, 3), _z(4, 5), 0.1), (ValueError,), ("same shape",)),
    "nt_xent: dtypes differ": (lambda: ops.nt_xent(_z(4, 3), _z(4, 3, dtype=F64), 0.1), (ValueError,), ("dtype",)),
    "nt_xent: 1-d": (lambda: ops.nt_xent(_z(4), _z(4), 0.1), (ValueError,), ("2-d",)),
    "nt_xent: 3-d": (lambda: ops.nt_xent(_z(2, 4, 3), _z(2, 4, 3), 0.1), (ValueError,), ("2-d",)),
    "nt_xent: empty batch": (lambda: ops.nt_xent(_z(0, 3), _z(0, 3), 0.1), (ValueError,), ("at least one row",)),
    "nt_xent: zero features": (lambda: ops.nt_xent(_z(4, 0), _z(4, 0), 0.1), (ValueError,), ("one feature",)),
    "nt_xent: nan temperature": (lambda: ops.nt_xent(_z(4, 3), _z(4, 3), NAN), (ValueError,), ("temperature",)),
    "nt_xent: inf temperature": (lambda: ops.nt_xent(_z(4, 3), _z(4, 3), float("inf")), (ValueError,), ("temperature",)),
    "nt_xent: zero temperature": (lambda: ops.nt_xent(_z(4, 3), _z(4, 3), 0.0), (ValueError,), ("temperature",)),
    "nt_xent: negative temperature": (lambda: ops.nt_xent(_z(4, 3), _z(4, 3), -0.1), (ValueError,), ("temperature",)),
    "nt_xent: tensor temperature": (lambda: ops.nt_xent(_z(4, 3), _z(4, 3), torch.tensor(0.1)), (ValueError,), ("temperature",)),
    "nt_xent: nan embedding": (lambda: ops.nt_xent(torch.full((4, 3), NAN), _z(4, 3), 0.1), (ValueError,), ("z1", "non-finite")),
    "nt_xent: numpy input": (lambda: ops.nt_xent(_z(4, 3).numpy(), _z(4, 3).numpy(), 0.1), (ValueError,), ("torch.tensor",)),
    # -- musicrep.ops.resample_shift -------------------------------------------------------
    "resample: int": (lambda: ops.resample_shift(torch.ones(2, 100, dtype=torch.int32), 1.5), (ValueError,), ("floating",)),
    "resample: complex": (lambda: ops.resample_shift(_z(2, 100, dtype=torch.complex64), 1.5), (ValueError,), ("floating",)),
    "resample: meta": (lambda: ops.resample_shift(_z(2, 100, device="meta"), 1.5), (ValueError,), ("meta",)),
    "resample: meta ratio": (lambda: ops.resample_shift(_z(2, 100), torch.ones(2, device="meta")), (ValueError,), ("ratio", "meta")),
    "resample: 1-d": (lambda: ops.resample_shift(_z(100), 1.5), (ValueError,), ("[batch, time]",)),
    "resample: 3-d": (lambda: ops.resample_shift(_z(2, 2, 100), 1.5), (ValueError,), ("[batch, time]",)),
    "resample: zero length": (lambda: ops.resample_shift(_z(2, 0), 1.5), (ValueError,), ("time > 0",)),
    "resample: ratio nan": (lambda: ops.resample_shift(_z(2, 100), NAN), (ValueError,), ("ratio",)),
    "resample: ratio 0": (lambda: ops.resample_shift(_z(2, 100), 0.0), (ValueError,), ("ratio",)),
    "resample: ratio 17": (lambda: ops.resample_shift(_z(2, 100), 17.0), (ValueError,), ("ratio",)),
    "resample: ratio shape": (lambda: ops.resample_shift(_z(2, 100), torch.ones(3)), (ValueError,), ("ratio", "batch=2")),
    "resample: ratio complex": (lambda: ops.resample_shift(_z(2, 100), torch.ones(2, dtype=torch.complex64)), (ValueError,), ("ratio", "real")),
    "resample: start inf": (lambda: ops.resample_shift(_z(2, 100), 1.5, start=float("inf")), (ValueError,), ("start",)),
    "resample: length 0": (lambda: ops.resample_shift(_z(2, 100), 1.5, length=0), (ValueError,), ("length",)),
    "resample: length 2**62": (lambda: ops.resample_shift(_z(2, 100), 1.5, length=2**62), (RuntimeError,), ("overflow",)),
    "resample: zeros 0": (lambda: ops.resample_shift(_z(2, 100), 1.5, zeros=0), (ValueError,), ("zeros",)),
    "resample: zeros 65": (lambda: ops.resample_shift(_z(2, 100), 1.5, zeros=65), (ValueError,), ("zeros",)),
    "resample: requires grad": (lambda: ops.resample_shift(_z(2, 100, requires_grad=True), 1.5), (ValueError,), ("grad",)),
    # -- torch.ops.musicrep directly: the TORCH_CHECK backstops ---------------------------------------
    "_C mel: int": (lambda: _raw_mel(torch.ones(1, W, dtype=torch.int32)), (RuntimeError,), ("float32",)),
    "_C mel: strided": (lambda: _raw_mel(_z(1, 2 * W)[:, ::2]), (RuntimeError,), ("contiguous",)),
    "_C mel: 1-d": (lambda: _raw_mel(_z(W)), (RuntimeError,), ("[b, t]",)),
    "_C mel: empty": (lambda: _raw_mel(_z(0, W)), (RuntimeError,), ("empty",)),
    "_C mel: n_fft 2**29": (lambda: _raw_mel(_z(1, W), n_fft=2**29, win_length=2**29, pad_mode=1), (RuntimeError,), ("n_fft",)),
    "_C mel: n_fft 0": (lambda: _raw_mel(_z(1, W), n_fft=0, win_length=0), (RuntimeError,), ("mel_spectrogram",)),
    "_C mel: hop 0": (lambda: _raw_mel(_z(1, W), hop_length=0), (RuntimeError,), ("hop_length",)),
    "_C mel: win > n_fft": (lambda: _raw_mel(_z(1, W), win_length=300), (RuntimeError,), ("win_length",)),
    "_C mel: short uncentered": (lambda: _raw_mel(_z(1, 100), center=False), (RuntimeError,), ("shorter",)),
    "_C mel: reflect too short": (lambda: _raw_mel(_z(1, 100)), (RuntimeError,), ("reflect",)),
    "_C mel: f_max nan": (lambda: _raw_mel(_z(1, W), f_max=NAN), (RuntimeError,), ("f_max",)),
    "_C mel: f_max > nyquist": (lambda: _raw_mel(_z(1, W), f_max=9000.0), (RuntimeError,), ("f_max",)),
    "_C mel: sample_rate inf": (lambda: _raw_mel(_z(1, W), sample_rate=float("inf")), (RuntimeError,), ("sample_rate",)),
    "_C mel: norm nan": (lambda: _raw_mel(_z(1, W), norm_p=NAN), (RuntimeError,), ("norm_p",)),
    "_C mel: norm -5": (lambda: _raw_mel(_z(1, W), norm_p=-5.0), (RuntimeError,), ("norm_p",)),
    "_C mel: power nan": (lambda: _raw_mel(_z(1, W), power=NAN), (RuntimeError,), ("power",)),
    "_C mel: log_floor 0": (lambda: _raw_mel(_z(1, W), log_mode=1, log_floor=0.0), (RuntimeError,), ("log_floor",)),
    "_C mel: pad mode 7": (lambda: _raw_mel(_z(1, W), pad_mode=7), (RuntimeError,), ("pad",)),
    "_C mel: log mode -1": (lambda: _raw_mel(_z(1, W), log_mode=-1), (RuntimeError,), ("log mode",)),
    "_C mel: n_mels 2**40": (lambda: _raw_mel(_z(1, W), n_mels=2**40), (RuntimeError,), ("allocate",)),
    "_C mel: wrong arg type": (lambda: _raw_mel([0.0] * W), (RuntimeError,), ("expected a value of type 'tensor'",)),
    "_C filterbank: n_fft 2**62": (lambda: _raw_fb(n_fft=2**62), (RuntimeError,), ("n_fft",)),
    "_C filterbank: n_mels 0": (lambda: _raw_fb(n_mels=0), (RuntimeError,), ("n_mels",)),
    "_C filterbank: f_max inf": (lambda: _raw_fb(f_max=float("inf")), (RuntimeError,), ("f_max",)),
    "_C filterbank: f_max > nyquist": (lambda: _raw_fb(f_max=1e5), (RuntimeError,), ("f_max",)),
    "_C filterbank: f_min < 0": (lambda: _raw_fb(f_min=-1.0), (RuntimeError,), ("f_min",)),
    "_C filterbank: sample_rate nan": (lambda: _raw_fb(sample_rate=NAN), (RuntimeError,), ("sample_rate",)),
    "_C filterbank: norm nan": (lambda: _raw_fb(norm_p=NAN), (RuntimeError,), ("norm_p",)),
    "_C nt_xent: int": (lambda: _c().nt_xent_lse(torch.ones(8, 3, dtype=torch.int32), 4, 10.0), (RuntimeError,), ("float32",)),
    "_C nt_xent: float16 on cpu": (lambda: _c().nt_xent_lse(_z(8, 3).half(), 4, 10.0), (RuntimeError,), ("float32",)),
    "_C nt_xent: transposed": (lambda: _c().nt_xent_lse(_z(3, 8).t(), 4, 10.0), (RuntimeError,), ("contiguous",)),
    "_C nt_xent: 1-d": (lambda: _c().nt_xent_lse(_z(8), 4, 10.0), (RuntimeError,), ("[mc, d]",)),
    "_C nt_xent: one row": (lambda: _c().nt_xent_lse(_z(1, 3), 1, 10.0), (RuntimeError,), ("2 candidates",)),
    "_C nt_xent: M > rows": (lambda: _c().nt_xent_lse(_z(8, 3), 9, 10.0), (RuntimeError,), ("m <= mc",)),
    "_C nt_xent: M 0": (lambda: _c().nt_xent_lse(_z(8, 3), 0, 10.0), (RuntimeError,), ("0 < m",)),
    "_C nt_xent: inv_tau nan": (lambda: _c().nt_xent_lse(_z(8, 3), 4, NAN), (RuntimeError,), ("inv_tau",)),
    "_C nt_xent: inv_tau -1": (lambda: _c().nt_xent_lse(_z(8, 3), 4, -1.0), (RuntimeError,), ("inv_tau",)),
    "_C nt_xent bwd: lse length": (lambda: _c().nt_xent_lse_backward(_z(8, 3), _z(3), _z(4), 4, 10.0), (RuntimeError,), ("lse",)),
    "_C nt_xent bwd: g dtype": (lambda: _c().nt_xent_lse_backward(_z(8, 3), _z(4), _z(4, dtype=F64), 4, 10.0), (RuntimeError,), ("g must",)),
    "_C nt_xent bwd: strided g": (lambda: _c().nt_xent_lse_backward(_z(8, 3), _z(4), _z(8)[::2], 4, 10.0), (RuntimeError,), ("g must",)),
    "_C resample: int x": (lambda: _raw_rs(torch.ones(2, 100, dtype=torch.int32)), (RuntimeError,), ("float32",)),
    "_C resample: strided x": (lambda: _raw_rs(_z(2, 200)[:, ::2]), (RuntimeError,), ("contiguous",)),
    "_C resample: ratio 0": (lambda: _raw_rs(ratio=0.0), (RuntimeError,), ("ratio",)),
    "_C resample: ratio nan": (lambda: _raw_rs(ratio=NAN), (RuntimeError,), ("ratio",)),
    "_C resample: ratio -1": (lambda: _raw_rs(ratio=-1.0), (RuntimeError,), ("ratio",)),
    "_C resample: ratio 1e300": (lambda: _raw_rs(ratio=1e300), (RuntimeError,), ("ratio",)),
    "_C resample: ratio float32": (lambda: _raw_rs(ratio=torch.ones(2)), (RuntimeError,), ("float64",)),
    "_C resample: ratio length": (lambda: _raw_rs(ratio=torch.ones(3, dtype=F64)), (RuntimeError,), ("[batch]",)),
    "_C resample: start nan": (lambda: _raw_rs(start=NAN), (RuntimeError,), ("start",)),
    "_C resample: start inf": (lambda: _raw_rs(start=float("-inf")), (RuntimeError,), ("start",)),
    "_C resample: zeros 0": (lambda: _raw_rs(zeros=0), (RuntimeError,), ("zeros",)),
    "_C resample: zeros 2**40": (lambda: _raw_rs(zeros=2**40), (RuntimeError,), ("zeros",)),
    "_C resample: out_len -1": (lambda: _raw_rs(out_len=-1), (RuntimeError,), ("out_len",)),
    "_C resample: out_len 2**62": (lambda: _raw_rs(out_len=2**62), (RuntimeError,), ("overflow",)),
}


def _run_cases(names: list[str]) -> None:
    """Child process: one JSON line per case, flushed before the next case starts."""
    for name in names:
        call, _, _ = CASES[name]
        print(json.dumps({"start": name}), flush=True)
        try:
            value = call()
            outcome = {"returned": repr(getattr(value, "shape", value))}
        except Exception as exc:  # noqa: BLE001 - the parent checks the type
            outcome = {"raised": type(exc).__name__, "mro": [c.__name__ for c in type(exc).__mro__],
                       "message": str(exc)}
        print(json.dumps({"case": name, **outcome}), flush=True)


@pytest.fixture(scope="module")
def outcomes() -> dict[str, dict]:
    """Each case's outcome from child processes; a case that killed its child is a crash."""
    results: dict[str, dict] = {}
    pending = list(CASES)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    while pending:
        proc = subprocess.run([sys.executable, __file__, *pending], capture_output=True, text=True,
                              env=env, timeout=300)
        started = None
        for line in proc.stdout.splitlines():
            record = json.loads(line)
            if "start" in record:
                started = record["start"]
            else:
                results[record["case"]] = record
        done = [n for n in pending if n in results]
        pending = [n for n in pending if n not in results]
        if pending:  # the child died inside `started` (or before any case)
            crashed = started if started in pending else pending[0]
            results[crashed] = {"crash": proc.returncode, "stderr": proc.stderr[-2000:]}
            pending.remove(crashed)
        assert done or crashed, "no progress"
    return results


@pytest.mark.parametrize("name", list(CASES))
def test_bad_call_raises_a_clear_python_error(name: str, outcomes: dict[str, dict]) -> None:
    _, types, words = CASES[name]
    got = outcomes[name]
    assert "crash" not in got, f"{name}: the process died (exit {got.get('crash')}):\n{got.get('stderr')}"
    assert "raised" in got, f"{name}: returned {got['returned']} instead of raising"
    assert any(t.__name__ in got["mro"] for t in types), f"{name}: raised {got['raised']}: {got['message']}"
    first_line = got["message"].splitlines()[0].lower()
    for word in words:
        assert word in first_line, f"{name}: message {first_line!r} does not say {word!r}"


def test_meta_tensors_get_their_shapes_from_the_fake_implementations() -> None:
    """A tensor without data (meta) never reaches a kernel: the operator's fake implementation
    (musicrep.ops.registration) gives the output's shape, as tracing needs."""
    meta = dict(device="meta")
    assert _raw_mel(_z(3, W, **meta)).shape == (3, 16, 1 + W // 64)
    assert _raw_mel(_z(3, W, **meta)).device.type == "meta"
    assert _c().nt_xent_lse(_z(8, 3, **meta), 4, 10.0).shape == (4,)
    assert _c().nt_xent_lse_backward(_z(8, 3, **meta), _z(4, **meta), _z(4, **meta), 4, 10.0).shape == (8, 3)
    assert _raw_rs(_z(2, 100, **meta), ratio=torch.ones(2, dtype=F64, device="meta"),
                   start=torch.zeros(2, dtype=F64, device="meta"), out_len=70).shape == (2, 70)


# -- odd but valid layouts: must work and equal the contiguous call and the reference ------------

def _layouts(base: torch.Tensor) -> dict[str, torch.Tensor]:
    """Non-contiguous views holding the same values as ``base`` [B, T] (B >= 2)."""
    b, t = base.shape
    return {
        "transposed": base.t().contiguous().t(),
        "strided": torch.zeros(b, 2 * t, dtype=base.dtype).index_copy_(1, torch.arange(0, 2 * t, 2), base)[:, ::2],
        "offset": torch.cat([torch.zeros(b, 7, dtype=base.dtype), base], 1)[:, 7:],
        "row-strided": torch.stack([base, torch.zeros_like(base)], 1).reshape(2 * b, t)[::2],
    }


def test_mel_spectrogram_takes_any_layout(rng: torch.Generator) -> None:
    base = torch.randn(3, 900, generator=rng, dtype=F64)
    expected = ops.mel_spectrogram(base, 8000, n_fft=128, n_mels=12)
    oracle = reference.mel_spectrogram(base, 8000, n_fft=128, n_mels=12)
    torch.testing.assert_close(expected, oracle, rtol=1e-9, atol=1e-12)
    views = {**_layouts(base), "expanded": base[:1].expand(3, -1)}
    for name, view in views.items():
        assert not view.is_contiguous(), name
        want = expected if name != "expanded" else expected[:1].expand(3, -1, -1)
        torch.testing.assert_close(ops.mel_spectrogram(view, 8000, n_fft=128, n_mels=12), want,
                                   rtol=1e-12, atol=0, msg=name)


def test_mel_spectrogram_gradient_through_a_transposed_view(rng: torch.Generator) -> None:
    base = torch.randn(600, 2, generator=rng, dtype=F64).t()
    x1, x2 = base.clone().requires_grad_(True), base.detach().t().contiguous().t().requires_grad_(True)
    ops.mel_spectrogram(x2, 8000, n_fft=64, n_mels=8, log="log1p").sum().backward()
    reference.mel_spectrogram(x1, 8000, n_fft=64, n_mels=8, log="log1p").sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-8, atol=1e-10)


def test_nt_xent_takes_any_layout_and_half_precision(rng: torch.Generator) -> None:
    z1, z2 = torch.randn(2, 6, 5, generator=rng, dtype=F64)
    expected = reference.nt_xent(z1, z2, 0.3)
    for name, (v1, v2) in {"transposed": (z1.t().contiguous().t(), z2.t().contiguous().t()),
                           "strided": (torch.stack([z1, z2], 2)[..., 0], torch.stack([z2, z1], 2)[..., 0])}.items():
        assert not v1.is_contiguous(), name
        a = v1.clone().requires_grad_(True)
        loss = ops.nt_xent(a, v2, 0.3)
        torch.testing.assert_close(loss, expected, rtol=1e-10, atol=0, msg=name)
        loss.backward()
        b = z1.clone().requires_grad_(True)
        reference.nt_xent(b, z2, 0.3).backward()
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-12, msg=name)
    half = ops.nt_xent(z1.half(), z2.half(), 0.3)
    torch.testing.assert_close(half.double(), reference.nt_xent(z1.half().double(), z2.half().double(), 0.3),
                               rtol=2e-3, atol=2e-3)


def test_resample_shift_takes_any_layout(rng: torch.Generator) -> None:
    base = torch.randn(3, 400, generator=rng, dtype=F64)
    ratio = torch.tensor([0.7, 1.0, 1.9], dtype=F64)
    expected = ops.resample_shift(base, ratio, length=300)
    torch.testing.assert_close(expected, reference.resample_shift(base, ratio, length=300), rtol=1e-9, atol=1e-10)
    for name, view in _layouts(base).items():
        torch.testing.assert_close(ops.resample_shift(view, ratio, length=300), expected, rtol=0, atol=0, msg=name)
    strided_ratio = torch.stack([ratio, ratio], 1)[:, 0]
    assert not strided_ratio.is_contiguous()
    torch.testing.assert_close(ops.resample_shift(base, strided_ratio, length=300), expected, rtol=0, atol=0)
    far = ops.resample_shift(base, 1.0, start=1e300, length=50)  # reads nothing: all zeros, no UB
    assert far.shape == (3, 50) and not far.any()
    empty = ops.resample_shift(base[:0], 1.5)
    assert empty.shape == (0, 400)


if __name__ == "__main__":
    _run_cases(sys.argv[1:])
