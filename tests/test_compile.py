"""torch.compile of a whole model, front end included: one graph (``fullgraph=True`` raises at
any graph break), equal to eager. Most encoders compile with ``aot_eager`` (dynamo's capture and
AOT autograd with the ops' fake implementations, no code generation: seconds); one model goes
through inductor, which writes and builds C++ (tens of seconds on a CPU)."""
from __future__ import annotations

import pytest
import torch

from musicrep import ops
from musicrep.model import Embedder
from musicrep.registry import get_component

device = "cpu"

ENCODERS = {
    "fcn": dict(channels=[4, 8], dim=16),
    "band-cnn": dict(channels=[4, 8], freq_pool=[2, 2], time_pool=[2, 2], bands=4, dim=16),
    "resnet": dict(channels=[4, 8], blocks=[1, 1], dim=16),
    "sfnfnet": dict(preset="tiny"),
}


def _model(encoder: str, frontend: str = "mel") -> Embedder:
    torch.manual_seed(0)
    fe = get_component("frontend", frontend, n_mels=32, n_fft=256, hop_length=128, sample_rate=8000)
    return Embedder(fe, get_component("encoder", encoder, **ENCODERS[encoder]), window=1.0, hop=1.0).eval()


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("encoder", list(ENCODERS))
def test_front_end_and_encoder_compile_to_one_graph(encoder: str) -> None:
    model = _model(encoder)
    wave = torch.randn(2, 8000 * 3, device=device)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(wave), model(wave), rtol=1e-4, atol=1e-5)


def test_the_plain_pytorch_front_end_compiles_too() -> None:
    """``torch-mel`` (the reference) had a Python branch on the samples (its NaN scan)."""
    model = _model("fcn", "torch-mel")
    wave = torch.randn(2, 8000 * 2, device=device)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model, fullgraph=True, backend="aot_eager")(wave), model(wave),
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_inductor_compiles_the_model_with_the_operator_inside() -> None:
    model = _model("fcn")
    wave = torch.randn(3, 8000 * 2, device=device)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(wave), model(wave), rtol=1e-4, atol=1e-5)


def test_a_compiled_training_step_differentiates_through_the_ops() -> None:
    """The mel operator's and the NT-Xent operator's gradients, registered with them, in one
    compiled graph (forward and backward), equal to eager's."""
    model = _model("fcn").train()
    wave = torch.randn(4, 8000, device=device)

    def loss_and_grads(fn):
        model.zero_grad()
        z = fn(wave)
        loss = ops.nt_xent(z[:2], z[2:], 0.5)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    want_loss, want = loss_and_grads(model)
    got_loss, got = loss_and_grads(torch.compile(model, fullgraph=True, backend="aot_eager"))
    torch.testing.assert_close(got_loss, want_loss, rtol=1e-4, atol=1e-5)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-3, atol=1e-5)


def test_compiled_nt_xent_keeps_its_value_check() -> None:
    """The finiteness check of the loss lives in the operator, so a compiled loss still refuses NaN."""
    loss = torch.compile(lambda a, b: ops.nt_xent(a, b, 0.1), fullgraph=True, backend="aot_eager")
    z = torch.randn(4, 8, device=device)
    torch.testing.assert_close(loss(z, z.flip(0)), ops.nt_xent(z, z.flip(0), 0.1))
    with pytest.raises(ValueError, match="non-finite"):
        loss(torch.full((4, 8), float("nan"), device=device), z)


class _BranchyEncoder(torch.nn.Module):
    """An encoder with a Python branch on its input's values: a graph break."""

    dim = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(1, 2))[:, None].expand(-1, 4)
        return pooled * 2 if bool(x.sum() > 0) else pooled


def test_embed_compile_is_one_graph_or_eager(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """``[embed] compile = true`` (WindowEncoder) compiles the encoder as one graph; an encoder
    that breaks the graph is reported and runs eagerly instead of compiled piecewise."""
    import functools
    import logging

    from musicrep.accel import WindowEncoder

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    windows = torch.rand(6, 32, 40, device=device)  # positive: every chunk takes the same branch
    for encoder, stays_compiled in ((_model("band-cnn").encoder, True), (_BranchyEncoder(), False)):
        encode = WindowEncoder(encoder.eval(), torch.device(device), 4, compile=True)
        with caplog.at_level(logging.WARNING, logger="musicrep.accel"), torch.no_grad():
            got = encode(windows)["out"]
            torch.testing.assert_close(got, encoder(windows), rtol=1e-4, atol=1e-5)
        assert (encode.compiled is not None) == stays_compiled
    assert "torch.compile of the encoder failed" in caplog.text


def test_compiled_resampling_is_one_graph_and_keeps_its_range_check() -> None:
    """The pitch-shift engine compiles without a break; its ratio check is the operator's then."""
    shift = torch.compile(lambda x, r: ops.resample_shift(x, r), fullgraph=True, backend="aot_eager")
    x = torch.randn(3, 400, device=device)
    ratio = torch.tensor([0.8, 1.0, 1.3], device=device)
    torch.testing.assert_close(shift(x, ratio), ops.resample_shift(x, ratio))
    with pytest.raises(RuntimeError, match="ratio must lie in"):
        shift(x, torch.tensor([0.8, 1.0, 100.0], device=device))
