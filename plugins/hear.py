"""HEAR-API modules as musicrep encoders, and the ``waveform`` front end that feeds them audio.

A HEAR module (https://hearbenchmark.com/hear-api.html) takes raw audio, a musicrep encoder
takes front-end features ``[B, F, frames]``. The ``waveform`` front end bridges the two without
touching the core: it passes audio through as one feature row with one frame per sample
(``hop_length = 1``), so the Embedder's windows are windows of samples, and the ``hear``
encoder hands each window to the module's ``get_scene_embeddings``. Pair them::

    frontend = { type = "waveform", sample_rate = 16000 }
    encoder = { type = "hear", module = "some_package.hear_module", model_file = "weights.pt" }
"""
from __future__ import annotations

import importlib
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType

import torch
from torch import nn

from musicrep.config import invalid, matches, path_field, positive
from musicrep.hookspecs import Factories, hookimpl

HEAR_FUNCTIONS = ("load_model", "get_scene_embeddings", "get_timestamp_embeddings")


class Waveform(nn.Module):
    """Raw audio as features [B, 1, T] (one frame per sample), for encoders that take audio."""

    @dataclass
    class Config:
        sample_rate: int = positive(16000)

    hop_length = 1
    n_features = 1

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config, self.sample_rate = config, config.sample_rate

    def frames(self, num_samples: int) -> int:
        return num_samples

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() != 2 or not wave.is_floating_point():
            raise ValueError(f"the waveform front end takes float waves [B, T], got {wave.dtype} of shape "
                             f"{tuple(wave.shape)}")
        return wave.float().unsqueeze(1)


@contextmanager
def _without_current_directory():
    """``sys.path`` without the current directory (``''``, ``'.'`` or its absolute path) while a
    module is imported by name: a run folder or download one works in must not supply the code."""
    here = os.path.realpath(os.getcwd())
    saved = list(sys.path)
    sys.path[:] = [entry for entry in saved if entry not in ("", ".") and os.path.realpath(entry) != here]
    try:
        yield
    finally:
        sys.path[:] = saved + [entry for entry in sys.path if entry not in saved]  # keep what the import added


def import_hear_module(name: str) -> ModuleType:
    """The HEAR module ``name``, checked to offer the three HEAR functions.

    Imported from the installed packages and ``PYTHONPATH``, never from the current directory.
    """
    try:
        with _without_current_directory():
            module = importlib.import_module(name)
    except Exception as exc:  # whatever a third-party import raises, report it against the key
        raise invalid("module", f"cannot import HEAR module '{name}': {type(exc).__name__}: {exc}") from None
    missing = [f for f in HEAR_FUNCTIONS if not callable(getattr(module, f, None))]
    if missing:
        raise invalid("module", f"'{name}' is not a HEAR-API module: it lacks {', '.join(missing)}")
    return module


class HearEncoder(nn.Module):
    """A HEAR-API module's scene embedding of each window (raw audio: use the waveform front end)."""

    #: it imports the Python module its config names: only the user's own pipeline TOML (or code)
    #: may build it, never a description read from a checkpoint or run folder
    imports_code = True

    @dataclass
    class Config:
        # an importable HEAR module, e.g. "hearbaseline.naive"
        module: str = matches(r"[^\W\d]\w*(\.[^\W\d]\w*)*", "a dotted module name")
        model_file: str = path_field("")  # its load_model(model_file_path); "" = the module's default

        def __post_init__(self) -> None:
            import_hear_module(self.module)

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.hear = import_hear_module(config.module)
        model = self.hear.load_model(config.model_file) if config.model_file else self.hear.load_model()
        if isinstance(model, nn.Module):
            self.model = model  # a submodule: it moves with the Embedder to the run's device
        else:
            self.__dict__["model"] = model  # e.g. TensorFlow: not ours to move
        for attribute in ("sample_rate", "scene_embedding_size"):
            if not isinstance(getattr(model, attribute, None), int):
                raise ValueError(f"HEAR module '{config.module}': its model has no integer {attribute}")
        self.sample_rate = model.sample_rate  # the Embedder checks the front end gives this rate
        self.dim = model.scene_embedding_size

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Windows of audio ``[B, 1, samples]`` (the waveform front end's) -> ``[B, dim]``."""
        if features.dim() != 3 or features.shape[1] != 1:
            raise ValueError(f"the hear encoder takes raw audio windows [B, 1, samples] from the waveform front "
                             f"end, got shape {tuple(features.shape)}")
        embeddings = self.hear.get_scene_embeddings(features[:, 0].float(), self.model)
        embeddings = torch.as_tensor(embeddings, device=features.device)
        if tuple(embeddings.shape) != (len(features), self.dim):
            raise ValueError(f"HEAR module '{self.config.module}' returned scene embeddings of shape "
                             f"{tuple(embeddings.shape)}, expected {(len(features), self.dim)}")
        return embeddings.float()


@hookimpl
def musicrep_frontends() -> Factories:
    return {"waveform": Waveform}


@hookimpl
def musicrep_encoders() -> Factories:
    return {"hear": HearEncoder}
