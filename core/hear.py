"""Any musicrep model as a HEAR-API module: point hear-eval-kit at ``musicrep.hear``.

``load_model(path)`` takes what ``musicrep.load_model`` takes (a run folder, a ``final.pt``,
or ``"mule"`` with ``weights=``); the returned module has the HEAR attributes, and the two
embedding functions follow the HEAR 2021 API (https://hearbenchmark.com/hear-api.html):

- scene embeddings are the model's own track embeddings (its windows and pooling), so they
  equal what ``musicrep run`` stores for the same audio;
- timestamp embeddings are the encoder's window embeddings every ``timestamp_hop`` seconds
  (HEAR suggests at most 50 ms), each stamped with its window's centre. The audio is padded
  with half a window of silence at both ends so that the centres run from 0 to the end.
"""
from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from musicrep.load import ReadyModel
from musicrep.load import load_model as load_ready_model
from musicrep.model import Embedder

#: seconds between timestamp embeddings; HEAR suggests <= 50 ms for its onset tolerance
DEFAULT_TIMESTAMP_HOP = 0.05
#: windows encoded at once for timestamp embeddings, so 20 minutes of audio fit in memory
MAX_WINDOWS = 256


class HearModel(nn.Module):
    """A ready musicrep model with the HEAR attributes; use it with the functions below."""

    def __init__(self, model: ReadyModel, timestamp_hop: float = DEFAULT_TIMESTAMP_HOP) -> None:
        super().__init__()
        if not timestamp_hop > 0:
            raise ValueError(f"timestamp_hop must be positive seconds, got {timestamp_hop}")
        embedder = model.embedder
        self.scene = model
        # the same front end and encoder, windows every timestamp_hop seconds, counted from the start
        self.timestamps = ReadyModel(Embedder(embedder.frontend, embedder.encoder, window=embedder.window_seconds,
                                              hop=timestamp_hop, windowing="start"), model.precision)
        self.sample_rate = model.sample_rate
        self.scene_embedding_size = model.dim
        self.timestamp_embedding_size = embedder.encoder.dim
        hop_length = embedder.frontend.hop_length
        self.pad = embedder.window_frames * hop_length // 2  # samples of silence on each side
        # frame i is centred on sample i * hop_length: a window of W frames from frame s is centred
        # on frame s + (W - 1) / 2, which lies `pad` samples later in the padded audio
        self.centre_shift = (embedder.window_frames - 1) / 2 * embedder.seconds_per_frame - self.pad / self.sample_rate

    def train(self, mode: bool = True) -> "HearModel":
        if mode:
            raise RuntimeError("a HEAR model is for inference")
        return super().train(False)


def load_model(model_file_path: str = "", **kwargs: Any) -> HearModel:
    """A musicrep model for the HEAR API.

    ``model_file_path``: a musicrep run folder, ``RUN/models/<name>`` or its ``final.pt``, or
    ``"mule"`` (then ``weights=`` names the MULE checkpoint). ``timestamp_hop`` (seconds, default
    0.05) sets the spacing of timestamp embeddings; every other keyword goes to
    ``musicrep.load_model`` (``precision``, ``window``, ``hop``, ``pooling``, encoder options).
    """
    if not model_file_path:
        raise ValueError("musicrep.hear.load_model needs model_file_path: a musicrep run folder, a final.pt "
                         "checkpoint, or a ready model's name (with weights=PATH)")
    timestamp_hop = kwargs.pop("timestamp_hop", DEFAULT_TIMESTAMP_HOP)
    return HearModel(load_ready_model(model_file_path, **kwargs), timestamp_hop)


def _check(audio: Any, model: HearModel) -> torch.Tensor:
    """HEAR's input contract, checked: ``(n_sounds, n_samples)`` floating point, on the model's device."""
    if not isinstance(model, HearModel):
        raise ValueError(f"model must come from musicrep.hear.load_model, got {type(model).__name__}")
    if not isinstance(audio, torch.Tensor):
        raise ValueError(f"audio must be a torch.Tensor (n_sounds, n_samples), got {type(audio).__name__}")
    if audio.dim() != 2:
        raise ValueError(f"audio must be 2-D (n_sounds, n_samples) of mono audio, got shape {tuple(audio.shape)}")
    if not audio.is_floating_point():
        raise ValueError(f"audio must be floating point in [-1, 1], got dtype {audio.dtype}")
    if audio.shape[0] == 0 or audio.shape[1] == 0:
        raise ValueError(f"audio must hold at least one sound of at least one sample, got shape "
                         f"{tuple(audio.shape)}")
    device = next(itertools.chain(model.parameters(), model.buffers()), audio).device
    return audio.to(device=device, dtype=torch.float32)


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """``(n_sounds, n_samples)`` at ``model.sample_rate`` -> ``(n_sounds, scene_embedding_size)``."""
    return model.scene(_check(audio, model))


def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n_sounds, n_samples)`` -> embeddings ``(n_sounds, n_timestamps, timestamp_embedding_size)``
    and their window centres ``(n_sounds, n_timestamps)`` in milliseconds."""
    padded = F.pad(_check(audio, model), (model.pad, model.pad))
    embeddings, offsets = [], None
    for sound in padded:  # one sound at a time, its windows in chunks: bounded memory for long audio
        sound_embeddings, offsets = model.timestamps.timeline(sound[None], max_windows=MAX_WINDOWS)
        embeddings.append(sound_embeddings[0])
    centres_ms = (offsets.double() + model.centre_shift) * 1000.0
    stamps = centres_ms.float().to(padded.device).expand(len(padded), -1).contiguous()
    return torch.stack(embeddings), stamps
