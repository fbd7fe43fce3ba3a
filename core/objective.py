"""The contract of pre-training objectives (the concrete ones are plugins)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TrainingData:
    """What an objective learns about its data before training: the kind and size of targets."""

    kind: str | None          # multiclass | multilabel | regression, or None for unlabelled audio
    n_targets: int            # classes, labels or regression values (0 when unlabelled)


class Objective(nn.Module):
    """A loss over embeddings of ``views`` augmented crops per clip.

    ``setup`` is called once, before training, with the encoder's output size and what the
    data holds, so heads and projectors can be built to size; ``forward`` takes one embedding
    batch per view (each ``[B, D]``) and the targets ``[B, L]`` (or None) and returns a scalar.

    Objectives that keep their own copy of the encoder (BYOL's EMA target) use the optional
    parts: ``attach`` to copy it, ``needs_features`` to see the encoder's input, and
    ``after_step`` to update the copy after each optimizer step. The defaults do nothing, so
    an objective that needs none of this implements none of it.
    """

    views: int = 1
    needs_labels: bool = False
    #: True: ``forward`` also receives ``features=``, one ``[B, F, frames]`` batch per view: the
    #: augmented front-end output the encoder saw, for an objective that runs its own network on it.
    needs_features: bool = False

    def setup(self, dim: int, data: TrainingData) -> None:
        raise NotImplementedError

    def attach(self, encoder: nn.Module) -> None:
        """Called once after ``setup`` with the online encoder, before the trainer moves the model
        to its device and restores a checkpoint, so submodules made here (a target copy) are
        moved, saved and resumed with the rest. Do not keep ``encoder`` itself as a submodule."""

    def after_step(self, step: int, encoder: nn.Module) -> None:
        """Called after every optimizer step (``step`` = steps done), without autograd, with the
        online encoder (never the DDP wrapper): EMA targets update here. Must be deterministic:
        every DDP rank runs it on identical weights and must stay identical."""

    def forward(self, embeddings: list[torch.Tensor], targets: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError
