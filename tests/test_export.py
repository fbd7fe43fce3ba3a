"""``musicrep export``: each format written, loaded back and equal to the eager model on audio of
other batch sizes and lengths than it was traced with; a mismatch is an error and leaves no file."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from musicrep.cli import main
from musicrep.errors import MusicrepError
from musicrep.export import DeployableEmbedder, export_model
from musicrep.model import Embedder
from musicrep.registry import get_component

device = "cpu"
RATE = 8000
HAS_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime"))


def _embedder(windowing: str = "start", seed: int = 0) -> Embedder:
    torch.manual_seed(seed)
    frontend = get_component("frontend", "mel", sample_rate=RATE, n_fft=256, hop_length=128, n_mels=32)
    encoder = get_component("encoder", "fcn", channels=[4, 8], dim=16)
    return Embedder(frontend, encoder, window=1.0, hop=0.5, windowing=windowing).eval()


FORMATS = ["exported-program", "torchscript",
           pytest.param("onnx", marks=pytest.mark.skipif(not HAS_ONNX, reason="onnx, onnxscript or onnxruntime "
                                                                              "not installed"))]


@pytest.mark.parametrize("format", FORMATS)
def test_each_format_loads_back_and_matches_eager(tmp_path: Path, format: str) -> None:
    out = tmp_path / f"model.{format}"
    summary = export_model(_embedder(), format, out)
    assert out.is_file() and summary.max_relative_error <= 1e-4
    assert len({b for b, _ in summary.checked_shapes}) == 2 and len({t for _, t in summary.checked_shapes}) == 2
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary left
    assert any("twin" in note for note in summary.notes) == (format == "onnx")


@pytest.mark.parametrize("windowing", ["start", "centered"])
def test_the_deployable_windows_are_the_embedders(windowing: str) -> None:
    """The tensor-only windowing of an export equals Embedder.forward's list-built windows."""
    embedder = _embedder(windowing)
    deployable = DeployableEmbedder(embedder).eval()
    for length in (deployable.min_samples, deployable.min_samples + 5 * RATE + 77):
        wave = torch.randn(2, length, generator=torch.Generator().manual_seed(length))
        with torch.no_grad():
            torch.testing.assert_close(deployable(wave), embedder(wave), rtol=1e-5, atol=1e-6)


class _BatchCountingEncoder(nn.Module):
    """A trace pitfall: the batch size read as a Python int is frozen into a traced graph."""

    dim = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2))[:, None].expand(-1, 4) * float(int(x.shape[0]))


def test_a_mismatching_export_is_an_error_and_leaves_no_file(tmp_path: Path) -> None:
    embedder = _embedder()
    embedder.encoder = _BatchCountingEncoder()
    out = tmp_path / "broken.pt"
    with pytest.raises(MusicrepError, match="differs from the eager model"):
        export_model(embedder, "torchscript", out)
    assert list(tmp_path.iterdir()) == []


def test_cli_exports_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    embedder = _embedder(seed=3)
    description = {"frontend": {"type": "mel", "sample_rate": RATE, "n_fft": 256, "hop_length": 128, "n_mels": 32},
                   "encoder": {"type": "fcn", **vars(embedder.encoder.config)}}
    checkpoint = tmp_path / "final.pt"
    torch.save({"key": "k", "embedder": embedder.state_dict(), "description": description, "summary": {}}, checkpoint)
    out = tmp_path / "model.pt"
    assert main(["export", str(checkpoint), "--format", "torchscript", "--out", str(out)]) == 0
    assert "matches the eager model" in capsys.readouterr().out
    loaded = torch.jit.load(str(out))
    wave = torch.randn(2, 5 * RATE)
    reloaded = Embedder(embedder.frontend, embedder.encoder, window=3.0, hop=2.0).eval()  # the run's defaults
    with torch.no_grad():
        torch.testing.assert_close(loaded(wave), reloaded(wave), rtol=1e-4, atol=1e-5)


def test_cli_refuses_an_unknown_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["export", str(tmp_path / "nothing.pt"), "--format", "torchscript",
                 "--out", str(tmp_path / "x.pt")]) == 2
    assert "neither a known model" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.cuda
def test_compile_and_export_on_cuda(tmp_path: Path) -> None:
    """On a GPU (``make gpu-check``): the CUDA kernels registered under the operators, compiled by
    inductor into one graph with the encoder and exported, equal to eager on the GPU."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    from musicrep._native import has_cuda_kernels

    if not has_cuda_kernels():
        pytest.skip("musicrep._C was built without CUDA kernels")
    cuda = torch.device("cuda")
    embedder = _embedder().to(cuda)
    wave = torch.randn(3, 4 * RATE, device=cuda)
    with torch.no_grad():
        want = embedder(wave)
        torch.testing.assert_close(torch.compile(embedder, fullgraph=True)(wave), want, rtol=1e-4, atol=1e-4)
        program = torch.export.export(DeployableEmbedder(embedder).eval(), (wave,),
                                      dynamic_shapes={"wave": {0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC}})
        path = tmp_path / "model.pt2"
        torch.export.save(program, str(path))
        longer = torch.randn(2, 5 * RATE, device=cuda)
        torch.testing.assert_close(torch.export.load(str(path)).module()(longer), embedder(longer), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("format", ["exported-program", "torchscript"])
def test_a_saved_model_loads_in_a_fresh_process_after_importing_the_ops(tmp_path: Path, format: str) -> None:
    """Deployment: a process that imports musicrep.ops (which registers torch.ops.musicrep) runs
    the file, and gets what the exporting process got."""
    import subprocess
    import sys

    out = tmp_path / "model.bin"
    embedder = _embedder(seed=5)
    export_model(embedder, format, out)
    wave = torch.randn(2, 4 * RATE, generator=torch.Generator().manual_seed(9))
    torch.save(wave, tmp_path / "wave.pt")
    load = ("torch.export.load(sys.argv[1]).module()" if format == "exported-program" else "torch.jit.load(sys.argv[1])")
    script = (f"import sys, torch, musicrep.ops\nm = {load}\n"
              "torch.save(m(torch.load(sys.argv[2])), sys.argv[3])\n")
    subprocess.run([sys.executable, "-c", script, str(out), str(tmp_path / "wave.pt"), str(tmp_path / "got.pt")],
                   check=True, timeout=120)
    with torch.no_grad():
        torch.testing.assert_close(torch.load(tmp_path / "got.pt"), embedder(wave), rtol=1e-4, atol=1e-5)
