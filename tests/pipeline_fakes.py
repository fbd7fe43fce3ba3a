"""A tiny task and front end, registered as a test plugin, for pipeline tests.

The task's classes are sine pitches, so a probe on any sensible embedding beats chance.
"""
from __future__ import annotations

import types
import zlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from musicrep.hookspecs import hookimpl
from musicrep.tasks import Item, Task


class ToneTask(Task):
    """Sine tones at a few pitches; an optional bad item raises on decode."""

    @dataclass
    class Config:
        per_class: int = 6
        seconds: float = 1.5
        bad_items: int = 0

    kind = "multiclass"
    label_names = ["220", "330", "440"]
    metrics = ["accuracy"]

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config

    def load_items(self) -> list[Item]:
        splits = ["train"] * 4 + ["valid", "test", "test"]
        items = [Item(f"{label}-{i}", None, [label], splits[i % len(splits)])
                 for label in self.label_names for i in range(self.config.per_class)]
        return items + [Item(f"bad-{i}", f"/nowhere/bad-{i}.wav", ["220"], "train")
                        for i in range(self.config.bad_items)]

    def audio(self, item: Item, sample_rate: int) -> np.ndarray:
        from musicrep.audio import BadAudioError

        if item.id.startswith("bad"):
            raise BadAudioError(item.path, "not an audio file")
        rng = np.random.default_rng(zlib.crc32(item.id.encode()))  # stable across processes
        t = np.arange(int(self.config.seconds * sample_rate)) / sample_rate
        tone = np.sin(2 * np.pi * float(item.labels[0]) * t + rng.uniform(0, 6))
        return (0.5 * tone + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


class FrameFrontend(nn.Module):
    """Log-magnitude spectrum frames via torch.stft (test front end)."""

    @dataclass
    class Config:
        sample_rate: int = 8000
        n_fft: int = 256
        hop_length: int = 128

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.sample_rate, self.hop_length, self.n_fft = config.sample_rate, config.hop_length, config.n_fft
        # a buffer, so it moves with the model (not saved: it follows from n_fft)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wave, self.n_fft, self.hop_length, window=self.window, return_complex=True).abs()
        return torch.log1p(spec)


@hookimpl
def musicrep_tasks():
    return {"tones": ToneTask}


@hookimpl
def musicrep_frontends():
    return {"frames": FrameFrontend}


PLUGIN = types.SimpleNamespace(musicrep_tasks=musicrep_tasks, musicrep_frontends=musicrep_frontends)


def synth_pitch_task(seconds: float = 1.0, sample_rate: int | None = None) -> str:
    """The ``[tasks.pitch]`` TOML block of the smallest built-in synthetic task a pipeline test
    needs: 3 pitches, 12/6/6 tones."""
    rate = f"sample_rate = {sample_rate}\n" if sample_rate else ""
    return ('[tasks.pitch]\ntype = "synth"\nlabel = "pitch"\nn_classes = 3\n'
            f"n_train = 12\nn_valid = 6\nn_test = 6\nseconds = {seconds}\n{rate}")


SMALL_PRETRAIN_PIPELINE = """
[run]
name = {run}
device = "cpu"

[tasks.{task}]
type = "synth"
label = "pitch"
n_classes = 3
n_train = 9
n_valid = 3
n_test = 3
seconds = 0.5

[models.{model}]
frontend = {{ type = "mel", n_fft = 256, hop_length = 128, n_mels = 16 }}
encoder = {{ type = "fcn", channels = [4], dim = 8 }}

[models.{model}.pretrain]
objective = {{ type = "simclr", hidden = [8], projection_dim = 4 }}
data = [{data}]
steps = 2
batch_size = 4
clip_seconds = 0.5
warmup_steps = 1
{checkpoint_every}
[embed]
window = 0.5
hop = 0.25

[probe]
probes = [{{ type = "knn", k_grid = [1] }}]
"""


def small_pretrain_pipeline(*, run: str, data: str, task: str = "pitch", model: str = "small",
                            checkpoint_every: int | None = None) -> str:
    """A pipeline that pre-trains one tiny model (2 SimCLR steps) on ``data`` and probes a 9/3/3
    synthetic pitch task with k-NN. ``run``, ``task``, ``model`` and ``data`` are TOML text put in
    as they are (a bare key or a quoted string: the tests that use this put hostile names there)."""
    every = f"checkpoint_every = {checkpoint_every}\n" if checkpoint_every is not None else ""
    return SMALL_PRETRAIN_PIPELINE.format(run=run, task=task, model=model, data=data, checkpoint_every=every)
