"""How an encoder runs on its device: memory layout, cuDNN autotuning, batch size, compilation.

Extraction feeds the encoder windows of one fixed shape, and pre-training feeds it crops of
one fixed shape; both can use what a fixed shape allows. Each choice here is on by default
only where ``benchmarks/test_bench_input.py`` measured a gain (benchmarks/RESULTS.md):

- channels-last convolutions (``to_device``), where ``CHANNELS_LAST_ON`` lists the device type
  and the pass (inference, training);
- cuDNN autotuning (``autotune_fixed_shapes``), on CUDA, for the length of one run only;
- on CUDA, when no batch size is given, the biggest batch the free memory holds
  (``batch_for_memory``, from one probe of the encoder's per-window cost), halved and retried
  when the GPU runs out of memory anyway (``WindowEncoder``);
- ``torch.compile(fullgraph=True)`` of the encoder (``WindowEncoder(compile=True)``, ``[embed]
  compile = true``), off unless asked for.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from functools import partial
from typing import Callable

import torch
from torch import nn

from musicrep.errors import MusicrepError
from musicrep.layers import OUT, encode_layers

log = logging.getLogger("musicrep.accel")

#: (device type, pass) where convolutions run faster channels-last (NHWC), as measured (RESULTS.md).
#: Not CPU training: there torch 2.13's backward of a channels-last 1x1 convolution with stride 2
#: and 2-11 input channels (a small resnet's shortcut) crashes the process (segmentation fault).
#: CUDA awaits its benchmark rows (``test_encoder_memory_format[...-cuda-...]``).
CHANNELS_LAST_ON: frozenset[tuple[str, str]] = frozenset({("cpu", "inference")})
#: windows per encoder call when ``[embed] batch_size`` is not set and the device is not CUDA
CPU_BATCH = 32
#: at most this many windows per call on a GPU (past it a bigger batch gains nothing measurable)
MAX_GPU_BATCH = 1024
#: the share of the free GPU memory a sized batch may plan to use
MEMORY_SAFETY = 0.7
#: windows in the smaller of the two probe calls that measure the per-window cost
PROBE_WINDOWS = 4
#: the smallest padded batch is this fraction of the batch size: at most 7 shapes, little padding
SMALLEST_BUCKET = 64


def to_device(module: nn.Module, device: torch.device, *, training: bool = False) -> nn.Module:
    """``module`` on ``device``, its 4-d weights channels-last where that wins for this device type
    and pass (``training``: pre-training's forward and backward, else inference), in the default
    layout elsewhere (a model made channels-last for inference may be trained next).

    Converting the weights is enough: a convolution with channels-last weights gives a
    channels-last output, whatever the layout of its ``[B, 1, F, frames]`` input, so every
    later layer runs channels-last too. Like ``.to(device)`` this changes ``module`` in place.
    """
    wins = (device.type, "training" if training else "inference") in CHANNELS_LAST_ON
    return module.to(device, memory_format=torch.channels_last if wins else torch.contiguous_format)


def autotune_fixed_shapes(device: torch.device) -> Callable[[], None]:
    """Let cuDNN time its algorithms for the shapes it meets (a fixed window or crop shape is met
    thousands of times); on CUDA only. Returns the function that puts the process's setting back,
    so a library caller's own choice survives the run."""
    if device.type != "cuda":
        return lambda: None
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True

    def restore() -> None:
        torch.backends.cudnn.benchmark = before

    return restore


def batch_for_memory(free_bytes: int, bytes_per_window: float, fixed_bytes: float = 0, *,
                     safety: float = MEMORY_SAFETY, maximum: int = MAX_GPU_BATCH, multiple: int = 8) -> int:
    """Windows per encoder call that fit in ``safety`` of ``free_bytes``, given what each window
    costs and what a call costs regardless of its size; a multiple of ``multiple`` (tensor cores
    like it) when at least that many fit, at least 1 (whatever the memory says: the call then
    tells, and ``WindowEncoder`` halves), at most ``maximum``."""
    if bytes_per_window <= 0 or not math.isfinite(bytes_per_window):
        raise ValueError(f"bytes_per_window must be a positive number, got {bytes_per_window}")
    if not 0 < safety <= 1:
        raise ValueError(f"safety must be in (0, 1], got {safety}")
    if maximum < 1 or multiple < 1:
        raise ValueError(f"maximum and multiple must be at least 1, got {maximum} and {multiple}")
    fits = int((free_bytes * safety - max(fixed_bytes, 0)) // bytes_per_window)
    if fits >= multiple:
        fits -= fits % multiple
    return max(1, min(maximum, fits))


def bucket(windows: int, batch_size: int) -> int:
    """The padded size of a last, partial batch of ``windows``: the next power of two, at least
    ``batch_size / SMALLEST_BUCKET``, at most ``batch_size``. Fixed shapes are what cuDNN's
    autotuning and a compiled graph reuse; a track's window count varies, so without padding
    every drain's remainder would be a new shape."""
    floor = math.ceil(batch_size / SMALLEST_BUCKET)
    return min(batch_size, max(floor, 1 << max(0, windows - 1).bit_length()))


def measure_window_bytes(encoder: Callable[[torch.Tensor], object], windows: torch.Tensor) -> tuple[float, float]:
    """(bytes per window, bytes per call) of ``encoder`` (a module, or a function of the windows) on CUDA: the peak memory of two calls,
    on ``PROBE_WINDOWS`` and twice as many copies of the first window; the difference is the
    per-window cost, the rest is what any call costs (workspace, cast weights)."""
    device = windows.device
    peaks = []
    for n in (PROBE_WINDOWS, 2 * PROBE_WINDOWS):
        batch = windows[:1].expand(n, *windows.shape[1:]).contiguous()
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        encoder(batch)
        torch.cuda.synchronize(device)
        peaks.append(torch.cuda.max_memory_allocated(device) - before)
        del batch
    per_window = max(1.0, (peaks[1] - peaks[0]) / PROBE_WINDOWS)
    return per_window, max(0.0, peaks[0] - PROBE_WINDOWS * per_window)


def free_gpu_bytes(device: torch.device) -> int:
    """Memory a new batch can use: the driver's free memory plus what PyTorch holds unused."""
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


class WindowEncoder:
    """Runs an encoder over any number of windows of one shape, ``batch_size`` at a time, giving
    ``{layer: [N, D_layer]}`` for the asked ``layers`` (``musicrep.layers``; by default the
    embedding alone, ``{"out": ...}``), all from one forward pass per batch.

    ``batch_size=None``: ``CPU_BATCH`` off CUDA; on CUDA sized from the free memory at the
    first call (``batch_for_memory`` after ``measure_window_bytes``). When a call runs out of
    GPU memory the batch is halved and the call repeated (the windows already encoded are
    kept), down to one window. ``fixed_shapes`` (default: on CUDA, or when compiled) pads a
    last partial batch to its ``bucket`` so the encoder meets few shapes. ``compile`` runs the
    encoder through ``torch.compile(fullgraph=True)``; if that fails (a graph break included), it
    says why and runs eagerly.
    """

    def __init__(self, encoder: nn.Module, device: torch.device, batch_size: int | None = None, *,
                 compile: bool = False, fixed_shapes: bool | None = None, layers: Sequence[str] = (OUT,)) -> None:
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.device = device
        self.eager: Callable[[torch.Tensor], dict[str, torch.Tensor]] = partial(encode_layers, encoder,
                                                                                names=tuple(layers))
        self.batch_size = batch_size if batch_size is not None or device.type == "cuda" else CPU_BATCH
        self.fixed_shapes = device.type == "cuda" or compile if fixed_shapes is None else fixed_shapes
        # one graph or none: a graph break is reported (and the encoder runs eagerly) rather than
        # compiled piecewise; the compiled ops are PyTorch operators, so they never break it
        self.compiled: Callable[[torch.Tensor], dict[str, torch.Tensor]] | None = (
            torch.compile(self.eager, fullgraph=True) if compile else None)

    @property
    def ready_batch(self) -> int:
        """Windows worth a call now: the batch size, or 1 before a GPU batch has been sized."""
        return self.batch_size or 1

    def __call__(self, windows: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[N, ...]`` windows -> ``{layer: [N, D_layer]}``, in order."""
        if self.batch_size is None:
            self.batch_size = self.size_batch(windows)
        outputs: list[dict[str, torch.Tensor]] = []
        start = 0
        while start < len(windows):
            chunk = windows[start:start + self.batch_size]
            try:
                outputs.append(self.forward(chunk))
            except torch.cuda.OutOfMemoryError:
                failed = self.batch_size
            else:
                start += len(chunk)
                continue
            if failed == 1:  # outside the except block: its traceback no longer holds the tensors
                raise MusicrepError(f"the encoder ran out of GPU memory on a single window of shape "
                                    f"{tuple(windows.shape[1:])} on {self.device}; free GPU memory or use a "
                                    "smaller model or window")
            self.batch_size = failed // 2
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            log.warning("the encoder ran out of GPU memory at %d windows per call; going on at %d "
                        "(set [embed] batch_size to choose)", failed, self.batch_size)
        return {layer: torch.cat([o[layer] for o in outputs]) for layer in outputs[0]}

    def forward(self, chunk: torch.Tensor) -> dict[str, torch.Tensor]:
        n = len(chunk)
        size = bucket(n, self.batch_size) if self.fixed_shapes else n
        if size > n:  # repeats of the last window: encoders treat windows independently
            chunk = torch.cat([chunk, chunk[-1:].expand(size - n, *chunk.shape[1:])])
        if self.compiled is not None:
            try:
                return {layer: out[:n] for layer, out in self.compiled(chunk).items()}
            except torch.cuda.OutOfMemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 -- any compiler failure: say it, run eagerly
                log.warning("torch.compile of the encoder failed (%s: %s); running it uncompiled",
                            type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
                self.compiled = None
        return {layer: out[:n] for layer, out in self.eager(chunk).items()}

    def size_batch(self, windows: torch.Tensor) -> int:
        try:
            per_window, per_call = measure_window_bytes(self.eager, windows)
        except torch.cuda.OutOfMemoryError:  # not even the probe fits: one window a call will tell
            log.warning("the encoder ran out of GPU memory on %d windows while sizing its batch; "
                        "going on at 1", 2 * PROBE_WINDOWS)
            return 1
        free = free_gpu_bytes(self.device)
        size = batch_for_memory(free, per_window, per_call)
        log.info("encoder batch on %s: %d windows (%.1f MiB a window, %.0f MiB a call, %.0f MiB free)",
                 self.device, size, per_window / 2**20, per_call / 2**20, free / 2**20)
        return size
