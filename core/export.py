"""``musicrep export``: a model as one deployable file (ONNX, a torch.export program or TorchScript)
that takes waves ``[B, T]`` of any batch and length and gives track embeddings ``[B, D]``.

The file is written beside its destination, loaded back and run on random audio of batch sizes
and lengths other than the example it was traced with; only if it matches the eager model within
``TOLERANCE`` does it take its name. A mismatch is an error and leaves no file.

The compiled operators (``torch.ops.musicrep``) are nodes of an exported program and of a
TorchScript graph: loading those needs ``import musicrep``. ONNX has no form for them: a front end
that offers a ``reference_twin`` (the ``mel`` front ends: ``torch-mel``, the same features in
plain PyTorch) is exported through it, and ``export_model`` says so in its notes.
"""
from __future__ import annotations

import importlib.util
import io
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from musicrep.atomic import atomic_path
from musicrep.errors import MusicrepError
from musicrep.model import Embedder

FORMATS = ("onnx", "exported-program", "torchscript")
#: the largest relative L2 distance from the eager model's embeddings that an export may have
TOLERANCE = 1e-4
#: seconds beyond one window of the example an export is traced with
EXAMPLE_EXTRA = 2.0
#: (batch, seconds beyond the example's length) of the random audio an export is checked on
CHECKS = ((1, 0.3), (3, 1.7))


class DeployableEmbedder(nn.Module):
    """An Embedder's ``forward`` (front end, windows, encoder, pooling) in tensor operations only:
    the window starts come from the feature length as tensors, not from Python lists, so the
    batch and the length stay symbolic in a traced graph. Clips must span at least
    ``min_samples`` (one window: shorter ones are padded by extraction, a branch on the length
    that a graph cannot hold)."""

    def __init__(self, embedder: Embedder, frontend: nn.Module | None = None) -> None:
        super().__init__()
        self.frontend = frontend if frontend is not None else embedder.frontend
        self.encoder = embedder.encoder
        self.width, self.hop = embedder.window_frames, embedder.hop_frames
        self.windowing, self.pooling = embedder.windowing, embedder.pooling
        # the fewest frames whose windows need no padding nor fallback (model.WINDOWINGS)
        frames = self.width if self.windowing == "start" else max(self.width, self.hop + 1)
        self.min_samples = next(t for t in range(frames * embedder.frontend.hop_length + 1)
                                if embedder.frontend.frames(t) >= frames) if hasattr(embedder.frontend, "frames") \
            else frames * embedder.frontend.hop_length

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        features = self.frontend(wave)                                   # [B, F, N]
        if self.windowing == "start":
            windows = features.unfold(-1, self.width, self.hop)          # [B, F, W, width]
        else:  # centred at hop, 2 hop, ... below N, each clamped inside the clip
            n, before = features.shape[-1], self.width // 2
            centres = torch.arange(self.hop, n, self.hop, device=features.device)
            starts = centres.clamp(min=before, max=n - (self.width - before))
            index = (starts - before)[:, None] + torch.arange(self.width, device=features.device)
            windows = features[:, :, index]                              # [B, F, W, width]
        b, f, w, width = windows.shape
        flat = windows.permute(0, 2, 1, 3).reshape(b * w, f, width)
        embeddings = self.encoder(flat).reshape(b, w, -1)
        mean = embeddings.mean(dim=1)
        if self.pooling == "mean":
            return mean
        return torch.cat([mean, embeddings.std(dim=1, unbiased=False)], -1)


@dataclass
class ExportSummary:
    path: Path
    format: str
    max_relative_error: float
    checked_shapes: list[tuple[int, int]]
    notes: list[str] = field(default_factory=list)


def export_model(embedder: Embedder, format: str, out: str | Path, *, tolerance: float = TOLERANCE,
                 seed: int = 0) -> ExportSummary:
    """Write ``embedder`` (eval mode, on the CPU) as ``format`` to ``out``, checked against its eager
    embeddings on random audio; raises ``MusicrepError`` (and writes nothing) on a mismatch."""
    if format not in FORMATS:
        raise MusicrepError(f"export format must be one of {', '.join(FORMATS)}, got {format!r}")
    if format == "onnx":
        missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
        if missing:
            raise MusicrepError(f"exporting to ONNX needs {', '.join(missing)}: pip install {' '.join(missing)}")
    embedder = embedder.cpu().eval()
    notes: list[str] = []
    frontend = embedder.frontend
    if format == "onnx" and hasattr(frontend, "reference_twin"):
        frontend = frontend.reference_twin().eval()
        notes.append(f"the front end's compiled operator has no ONNX form: exported as its plain-PyTorch twin "
                     f"({type(frontend).__name__}, musicrep.ops.reference), checked against the compiled one")
    deployable = DeployableEmbedder(embedder, frontend).eval()
    generator = torch.Generator().manual_seed(seed)
    example = 0.1 * torch.randn(2, deployable.min_samples + int(EXAMPLE_EXTRA * embedder.sample_rate),
                                generator=generator)
    out = Path(out)
    with torch.no_grad(), atomic_path(out) as tmp:
        load = _WRITERS[format](deployable, example, tmp, embedder.sample_rate)
        worst, shapes = 0.0, []
        for batch, extra in CHECKS:
            wave = 0.1 * torch.randn(batch, example.shape[1] + int(extra * embedder.sample_rate),
                                     generator=generator)
            want = embedder(wave)
            got = load(wave)
            error = float((got - want).norm() / want.norm().clamp_min(1e-12))
            if not error <= tolerance:  # NaN fails too
                raise MusicrepError(f"{out}: the exported {format} model differs from the eager model by "
                                    f"{error:.2e} (relative L2, at most {tolerance:g}) on audio of shape "
                                    f"{tuple(wave.shape)}; nothing written")
            worst, shapes = max(worst, error), shapes + [tuple(wave.shape)]
    return ExportSummary(out, format, worst, shapes, notes)


def _dynamic(min_samples: int) -> dict:
    """Batch and length dynamic; the exporter finds the range the model holds for (an encoder's
    pooling may need more than one window: the program then refuses shorter clips itself)."""
    return {"wave": {0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC}}


def _write_exported_program(model: DeployableEmbedder, example: torch.Tensor, path: Path, _rate: int):
    program = torch.export.export(model, (example,), dynamic_shapes=_dynamic(model.min_samples))
    with open(path, "wb") as f:  # a file object: the temporary name does not end in .pt2
        torch.export.save(program, f)
    loaded = torch.export.load(io.BytesIO(path.read_bytes())).module()
    return lambda wave: loaded(wave)


def _write_onnx(model: DeployableEmbedder, example: torch.Tensor, path: Path, _rate: int):
    import onnxruntime

    program = torch.onnx.export(model, (example,), input_names=["wave"], output_names=["embedding"],
                                dynamic_shapes=_dynamic(model.min_samples), dynamo=True, verbose=False)
    program.save(str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda wave: torch.from_numpy(session.run(None, {"wave": wave.numpy()})[0])


def _write_torchscript(model: DeployableEmbedder, example: torch.Tensor, path: Path, _rate: int):
    traced = torch.jit.trace(model, (example,), check_trace=False)
    torch.jit.save(traced, str(path))
    loaded = torch.jit.load(str(path))
    return lambda wave: loaded(wave)


_WRITERS = {"onnx": _write_onnx, "exported-program": _write_exported_program, "torchscript": _write_torchscript}
