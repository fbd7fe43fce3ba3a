"""A ready embedder: front end + encoder + windowing. Waves in, embeddings out.

Tracks are turned into features once, then cut into fixed-width windows of frames (every
``hop`` seconds); the encoder embeds each window and the track embedding pools them. This is
what extraction runs and what ``musicrep.load_model`` returns.

Two windowings: ``"start"`` (windows start at frame 0, then every hop) and ``"centered"``
(MULE's: window centres at every hop after frame 0, each window spanning half a width either
side, clamped to lie inside the track) -- the latter is what MULE's weights were used with.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from musicrep.errors import ConfigError


def window_starts(n_frames: int, width: int, hop: int) -> list[int]:
    """Start frames of the windows of a track with ``n_frames`` frames (at least one)."""
    if n_frames <= width:
        return [0]
    return list(range(0, n_frames - width + 1, hop))


def centered_window_starts(n_frames: int, width: int, hop: int) -> list[int]:
    """Start frames of MULE-style windows: centres at ``hop, 2 hop, ...`` below ``n_frames``.

    Each window spans ``width // 2`` frames before its centre and the rest after; centres are
    clamped so the window lies inside the track. A track shorter than one window gets one
    window (padded by ``cut_windows``); one with no centre in range gets its last window.
    """
    if n_frames < width:
        return [0]
    before, after = width // 2, width - width // 2
    centres = [min(max(c, before), n_frames - after) for c in range(hop, n_frames, hop)]
    return [c - before for c in (centres or [n_frames - after])]


WINDOWINGS = {"start": window_starts, "centered": centered_window_starts}


def cut_windows(features: torch.Tensor, width: int, hop: int,
                windowing: str = "start") -> tuple[torch.Tensor, list[int]]:
    """``[F, frames]`` -> ``[W, F, width]`` and the start frames; short tracks are padded.

    A track shorter than one window is extended by reflection (edge repetition where it is
    too short to reflect), so the encoder always sees ``width`` frames.
    """
    n_frames = features.shape[-1]
    if n_frames < width:
        pad = width - n_frames
        mode = "reflect" if pad < n_frames else "replicate"
        features = F.pad(features.unsqueeze(0), (0, pad), mode=mode).squeeze(0)
    starts = WINDOWINGS[windowing](n_frames, width, hop)
    windows = features.unfold(-1, width, 1)[:, starts]   # a view, then only the chosen windows
    return windows.permute(1, 0, 2).contiguous(), starts


class Embedder(nn.Module):
    """Front end + encoder + windowing; ``forward`` gives one embedding per track."""

    def __init__(self, frontend: nn.Module, encoder: nn.Module, window: float = 3.0, hop: float = 2.0,
                 pooling: str = "mean", windowing: str = "start") -> None:
        super().__init__()
        if pooling not in ("mean", "mean+std"):
            raise ValueError(f"pooling must be 'mean' or 'mean+std', got {pooling!r}")
        if windowing not in WINDOWINGS:
            raise ValueError(f"windowing must be one of {', '.join(map(repr, WINDOWINGS))}, got {windowing!r}")
        encoder_rate = getattr(encoder, "sample_rate", None)  # an encoder of raw audio (e.g. hear) has one
        if encoder_rate is not None and encoder_rate != int(frontend.sample_rate):
            raise ConfigError(f"the encoder takes audio at {encoder_rate} Hz but the front end gives "
                              f"{int(frontend.sample_rate)} Hz; set the front end's sample_rate to {encoder_rate}")
        self.frontend, self.encoder = frontend, encoder
        self.window_seconds, self.hop_seconds, self.pooling = window, hop, pooling
        self.windowing = windowing
        self.sample_rate = int(frontend.sample_rate)
        frame_rate = self.sample_rate / frontend.hop_length
        self.window_frames = max(1, round(window * frame_rate))
        self.hop_frames = max(1, round(hop * frame_rate))
        self.seconds_per_frame = 1.0 / frame_rate

    @property
    def dim(self) -> int:
        return self.encoder.dim * (2 if self.pooling == "mean+std" else 1)

    def track_windows(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One track ``[T]`` -> its windows of features ``[W, F, width]`` and offsets (s)."""
        features = self.frontend(wave.unsqueeze(0))[0]
        windows, starts = cut_windows(features, self.window_frames, self.hop_frames, self.windowing)
        offsets = torch.tensor(starts, dtype=torch.float32) * self.seconds_per_frame
        return windows, offsets

    def pool(self, windows: torch.Tensor) -> torch.Tensor:
        mean = windows.mean(dim=-2)
        return mean if self.pooling == "mean" else torch.cat([mean, windows.std(dim=-2, unbiased=False)], -1)

    def windows(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Waves ``[B, T]`` -> windows of features ``[B, W, F, width]`` and their start times (s)."""
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)
        features = self.frontend(wave)
        per_track = [cut_windows(f, self.window_frames, self.hop_frames, self.windowing) for f in features]
        starts = per_track[0][1]
        windows = torch.stack([w for w, _ in per_track])  # same length waves: same window count
        return windows, torch.tensor(starts, dtype=torch.float32) * self.seconds_per_frame

    def timeline(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Waves ``[B, T]`` -> window embeddings ``[B, W, D]`` and window offsets in seconds."""
        windows, offsets = self.windows(wave)
        b, w = windows.shape[:2]
        return self.encoder(windows.flatten(0, 1)).view(b, w, -1), offsets

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Waves ``[B, T]`` -> pooled track embeddings ``[B, D]``."""
        return self.pool(self.timeline(wave)[0])
