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
    """

    views: int = 1
    needs_labels: bool = False

    def setup(self, dim: int, data: TrainingData) -> None:
        raise NotImplementedError

    def forward(self, embeddings: list[torch.Tensor], targets: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError
