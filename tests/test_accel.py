"""The encoder on its device (musicrep.accel): layout, cuDNN autotuning, batch sizing, OOM retry."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import musicrep
from musicrep import accel
from musicrep.accel import (WindowEncoder, autotune_fixed_shapes, batch_for_memory, bucket, to_device)
from musicrep.layers import encode_layers
from musicrep.embed import extract
from musicrep.errors import MusicrepError
from musicrep.model import Embedder
from musicrep.store import EmbeddingStore
from pipeline_fakes import FrameFrontend, ToneTask

#: the conv encoders and small configurations of them
CONV_ENCODERS = {"fcn": {"channels": [4, 8], "dim": 12}, "band-cnn": {"channels": [4, 8], "freq_pool": [2, 1], "time_pool": [2, 2], "bands": 4, "dim": 12},
                 "resnet": {"channels": [4, 8], "blocks": [1, 1], "dim": 12}, "sfnfnet": {"preset": "tiny"}}


def test_batch_for_memory_is_the_largest_multiple_that_fits() -> None:
    rng = np.random.default_rng()
    for _ in range(500):
        free = int(rng.integers(1, 2**36))
        per_window = float(rng.uniform(1e3, 2e8))
        fixed = float(rng.uniform(0, free))
        safety, maximum, multiple = float(rng.uniform(0.1, 1.0)), int(rng.integers(1, 5000)), int(rng.integers(1, 16))
        n = batch_for_memory(free, per_window, fixed, safety=safety, maximum=maximum, multiple=multiple)
        budget = free * safety - fixed
        assert 1 <= n <= maximum
        if n > 1:  # it fits (one window is the floor, whatever the memory says)
            assert n * per_window <= budget
        if n < maximum:  # and the next step up would not
            step = multiple if n >= multiple else 1
            assert (n + step) * per_window > budget or n + step > maximum
        if multiple <= n < maximum:
            assert n % multiple == 0


def test_batch_for_memory_caps_and_floors() -> None:
    gib = 2**30
    assert batch_for_memory(80 * gib, 1e6) == accel.MAX_GPU_BATCH  # plenty of memory: the cap
    assert batch_for_memory(gib, 2 * gib) == 1                       # a window does not fit: 1, the call tells
    assert batch_for_memory(10 * gib, gib, fixed_bytes=20 * gib) == 1
    assert batch_for_memory(100 * 2**20, 2**20, safety=1.0) == 96  # 100 fit, a multiple of 8
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="bytes_per_window"):
            batch_for_memory(gib, bad)
    with pytest.raises(ValueError, match="safety"):
        batch_for_memory(gib, 1e6, safety=1.5)


def test_bucket_pads_to_few_shapes() -> None:
    for batch in np.random.default_rng().integers(1, 2049, 50).tolist() + [1, 32, 1024]:
        sizes = {bucket(n, batch) for n in range(1, batch + 1)}
        assert all(n <= bucket(n, batch) <= batch for n in range(1, batch + 1))
        assert len(sizes) <= 8
        assert bucket(batch, batch) == batch


class OutOfMemoryAbove(nn.Module):
    """A fake encoder that runs out of 'GPU memory' on more than ``limit`` windows per call, and
    counts the windows it did encode (each window must be encoded once: no work lost)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit, self.encoded, self.dim = limit, 0, 3
        self.weight = nn.Parameter(torch.randn(3))

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        if len(windows) > self.limit:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (fake, {len(windows)} windows)")
        self.encoded += len(windows)
        return windows.flatten(1).mean(dim=1, keepdim=True) * self.weight


def test_out_of_memory_halves_the_batch_and_loses_nothing(caplog: pytest.LogCaptureFixture) -> None:
    device = torch.device("cpu")
    limit = int(np.random.default_rng().integers(1, 40))
    fake = OutOfMemoryAbove(limit)
    windows = torch.randn(int(np.random.default_rng().integers(50, 300)), 5, 7, device=device)
    encode = WindowEncoder(fake, device, batch_size=64)
    with caplog.at_level(logging.WARNING, logger="musicrep.accel"):
        out = encode(windows)["out"]
    torch.testing.assert_close(out, windows.flatten(1).mean(dim=1, keepdim=True) * fake.weight)
    assert fake.encoded == len(windows)  # every window once: the calls that ran out did no work
    assert encode.batch_size <= limit < 2 * encode.batch_size  # halved until it fit, no further
    assert "ran out of GPU memory at 64 windows per call" in caplog.text


def test_out_of_memory_on_one_window_is_a_clear_error() -> None:
    encode = WindowEncoder(OutOfMemoryAbove(0), torch.device("cpu"), batch_size=4)
    with pytest.raises(MusicrepError, match=r"out of GPU memory on a single window of shape \(5, 7\)"):
        encode(torch.randn(10, 5, 7))


class OutOfMemoryEmbedderEncoder(OutOfMemoryAbove):
    """The OOM fake as an encoder of [B, F, frames] features."""

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return super().forward(windows).expand(-1, 3).contiguous()


def test_extraction_out_of_memory_retries_to_the_same_store(tmp_path: Path) -> None:
    device = "cpu"
    config = ToneTask.Config(per_class=3, seconds=float(np.random.default_rng().uniform(1.0, 2.0)))
    stores, batches = [], []
    for name, limit in (("halved", 5), ("small", 1000)):
        torch.manual_seed(0)
        embedder = Embedder(FrameFrontend(FrameFrontend.Config()), OutOfMemoryEmbedderEncoder(limit),
                            window=0.5, hop=0.25)
        summary = extract(embedder, ToneTask(config), tmp_path / f"{name}.h5", {"m": 0},
                          batch_size=32 if limit == 5 else 4, progress=False, num_workers=0, device=device)
        stores.append(tmp_path / f"{name}.h5")
        batches.append(summary.batch_size)
    assert batches == [4, 4]  # 32 halved to 16, 8, then 4 fit under the limit of 5
    with EmbeddingStore(stores[0]) as a, EmbeddingStore(stores[1]) as b:
        halved, small = a.arrays(), b.arrays()
    assert len(halved["ids"]) == 9
    for key in halved:
        if halved[key].dtype.kind == "f":
            np.testing.assert_allclose(halved[key], small[key], rtol=1e-6, err_msg=key)
        else:
            np.testing.assert_array_equal(halved[key], small[key], err_msg=key)


@pytest.mark.parametrize("start", [False, True])
def test_autotuning_is_set_on_cuda_only_and_restored(start: bool) -> None:
    previous = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = start
        restore = autotune_fixed_shapes(torch.device("cuda"))  # a flag: settable without a GPU
        assert torch.backends.cudnn.benchmark is True
        restore()
        assert torch.backends.cudnn.benchmark is start
        restore = autotune_fixed_shapes(torch.device("cpu"))
        assert torch.backends.cudnn.benchmark is start
        restore()
        assert torch.backends.cudnn.benchmark is start
    finally:
        torch.backends.cudnn.benchmark = previous


def test_extraction_leaves_the_autotuning_setting_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Extraction and pre-training restore the flag also when they fail: a device that the flag
    applies to is faked (CUDA's code path with CPU tensors), and the task fails mid-way."""
    seen = []
    real = accel.autotune_fixed_shapes

    def spy(device: torch.device):
        restore = real(torch.device("cuda"))
        seen.append(torch.backends.cudnn.benchmark)
        return restore

    import musicrep.embed as embed_module
    monkeypatch.setattr(embed_module, "autotune_fixed_shapes", spy)
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    try:
        embedder = Embedder(FrameFrontend(FrameFrontend.Config()), OutOfMemoryEmbedderEncoder(0), window=0.5, hop=0.25)
        with pytest.raises(MusicrepError, match="single window"):
            extract(embedder, ToneTask(ToneTask.Config(per_class=1)), tmp_path / "s.h5", {"m": 0}, batch_size=4,
                    progress=False, num_workers=0, device="cpu")
        assert seen == [True] and torch.backends.cudnn.benchmark is False
    finally:
        torch.backends.cudnn.benchmark = previous


def layouts_agree(name: str, device: torch.device, training: bool) -> None:
    """``name``'s outputs (and with ``training``, its gradients) are the same whether its weights
    were left alone or put channels-last by ``to_device``."""
    seed = int(torch.randint(0, 2**31 - 1, ()))
    features = torch.randn(3, 96 if name == "sfnfnet" else 40, 64, device=device)
    results = []
    for channels_last in (False, True):
        torch.manual_seed(seed)
        encoder = musicrep.get_component("encoder", name, **CONV_ENCODERS[name]).to(device)
        if channels_last:
            to_device(encoder, device, training=training)
            convs = [p for p in encoder.parameters() if p.dim() == 4]
            assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
        if training:
            out = encoder.train()(features)
            out.square().mean().backward()
            results.append([out.detach()] + [p.grad.contiguous() for p in encoder.parameters()])
        else:
            with torch.inference_mode():
                results.append([encoder.eval()(features)])
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("name", list(CONV_ENCODERS))
def test_channels_last_gives_the_contiguous_outputs(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accel, "CHANNELS_LAST_ON", frozenset({("cpu", "inference")}))
    layouts_agree(name, torch.device("cpu"), training=False)


@pytest.mark.cuda
@pytest.mark.parametrize("name", list(CONV_ENCODERS))
def test_channels_last_gives_the_contiguous_outputs_and_gradients_on_gpu(name: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    monkeypatch.setattr(accel, "CHANNELS_LAST_ON", frozenset({("cuda", "inference"), ("cuda", "training")}))
    layouts_agree(name, torch.device("cuda"), training=False)
    layouts_agree(name, torch.device("cuda"), training=True)


def test_to_device_puts_the_default_layout_back_where_channels_last_does_not_win() -> None:
    """CPU training is not in CHANNELS_LAST_ON (a crash in torch's backward, see accel): a model
    made channels-last for inference on a CPU is trained in the default layout."""
    device = torch.device("cpu")
    encoder = musicrep.get_component("encoder", "fcn", channels=[4, 8], dim=8).to(memory_format=torch.channels_last)
    assert not all(p.is_contiguous() for p in encoder.parameters())
    to_device(encoder, device, training=True)
    assert all(p.is_contiguous() for p in encoder.parameters())


def test_padding_to_buckets_does_not_change_the_outputs() -> None:
    device = torch.device("cpu")
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, ())))
    encoder = musicrep.get_component("encoder", "fcn", channels=[4, 8], dim=12).eval()
    seen: list[int] = []
    encoder.register_forward_pre_hook(lambda _, args: seen.append(len(args[0])))
    windows = torch.randn(int(torch.randint(40, 90, ())), 40, 32, device=device)
    with torch.inference_mode():
        padded = WindowEncoder(encoder, device, batch_size=16, fixed_shapes=True)(windows)["out"]
        calls = list(seen)
        plain = encoder(windows)
    torch.testing.assert_close(padded, plain, rtol=1e-5, atol=1e-6)
    assert set(calls[:-1]) == {16} and calls[-1] == bucket(len(windows) % 16 or 16, 16)
    assert len(calls) == -(-len(windows) // 16)



def test_layers_are_batched_padded_and_joined_like_the_embedding() -> None:
    """Named layers (``musicrep.layers``) come out of the same batched, padded passes, each in
    window order, equal to one pass over all windows."""
    device = torch.device("cpu")
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, ())))
    encoder = musicrep.get_component("encoder", "fcn", channels=[4, 8], dim=12).eval()
    windows = torch.randn(int(torch.randint(20, 50, ())), 40, 32, device=device)
    with torch.inference_mode():
        got = WindowEncoder(encoder, device, batch_size=8, fixed_shapes=True, layers=("block1", "out"))(windows)
        whole = encode_layers(encoder, windows, ("block1", "out"))
    assert set(got) == {"block1", "out"}
    for layer in got:
        torch.testing.assert_close(got[layer], whole[layer], rtol=1e-5, atol=1e-6)

def test_unset_batch_size_on_cuda_is_sized_from_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA path's wiring, with the two CUDA queries faked (the windows stay on the CPU)."""
    device = torch.device("cpu")
    encoder = musicrep.get_component("encoder", "fcn", channels=[4], dim=8).eval()
    calls = []
    monkeypatch.setattr(accel, "measure_window_bytes", lambda enc, w: calls.append(w.shape) or (2**20, 2**24))
    monkeypatch.setattr(accel, "free_gpu_bytes", lambda d: 2**30)
    encode = WindowEncoder(encoder, torch.device("cuda"), None)
    assert encode.ready_batch == 1 and encode.fixed_shapes
    windows = torch.randn(20, 40, 32, device=device)
    with torch.inference_mode():
        out = encode(windows)["out"]
        torch.testing.assert_close(out, encoder(windows), rtol=1e-5, atol=1e-6)
    assert encode.batch_size == batch_for_memory(2**30, 2**20, 2**24) and len(calls) == 1
    assert WindowEncoder(encoder, device, None).batch_size == accel.CPU_BATCH  # the CPU default stays


def test_a_probe_that_runs_out_of_memory_starts_at_one_window(monkeypatch: pytest.MonkeyPatch) -> None:
    def probe(encoder: nn.Module, windows: torch.Tensor) -> tuple[float, float]:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (fake)")

    monkeypatch.setattr(accel, "measure_window_bytes", probe)
    windows = torch.randn(6, 5, 7, device="cpu")
    fake = OutOfMemoryAbove(100)
    encode = WindowEncoder(fake, torch.device("cuda"), None)
    torch.testing.assert_close(encode(windows)["out"], windows.flatten(1).mean(dim=1, keepdim=True) * fake.weight)
    assert encode.batch_size == 1 and fake.encoded == len(windows)


def test_a_failing_compile_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Not torch.compile itself (that may not work on a test machine): what happens when it fails."""
    device = torch.device("cpu")

    def broken(_: nn.Module, **options):
        def compiled(_: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("no C++ compiler found\nmore detail")
        return compiled

    monkeypatch.setattr(torch, "compile", broken)
    encoder = musicrep.get_component("encoder", "fcn", channels=[4], dim=8).eval()
    encode = WindowEncoder(encoder, device, 8, compile=True)
    windows = torch.randn(11, 40, 32, device=device)
    with caplog.at_level(logging.WARNING, logger="musicrep.accel"), torch.inference_mode():
        out = encode(windows)["out"]
        torch.testing.assert_close(out, encoder(windows), rtol=1e-5, atol=1e-6)
    assert "torch.compile of the encoder failed (RuntimeError: no C++ compiler found)" in caplog.text
    assert encode.compiled is None


@pytest.mark.cuda
def test_gpu_batch_is_sized_and_matches_eager() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    device = torch.device("cuda")
    previous = torch.backends.cudnn.benchmark
    encoder = to_device(musicrep.get_component("encoder", "sfnfnet", preset="s0"), device).eval()
    windows = torch.randn(70, 96, 300, device=device)
    encode = WindowEncoder(encoder, device)
    with torch.inference_mode():
        out = encode(windows)["out"]
        reference = torch.cat([encoder(w) for w in windows.split(8)])
    assert 8 <= encode.batch_size <= accel.MAX_GPU_BATCH
    torch.testing.assert_close(out, reference, rtol=1e-3, atol=1e-4)
    assert torch.backends.cudnn.benchmark == previous
