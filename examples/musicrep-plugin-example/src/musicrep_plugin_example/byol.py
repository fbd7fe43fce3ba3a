"""BYOL (Grill et al. 2020): an online network predicts an EMA target network's projection of
another crop of the same clip. No negatives: the predictor and the slowly moving target keep
the representation from collapsing."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from musicrep.config import interval, items, positive
from musicrep.objective import Objective, TrainingData


def mlp(dim: int, hidden: list[int], out: int) -> nn.Sequential:
    """BYOL's projector/predictor shape: (Linear, BatchNorm, ReLU) per hidden layer, then Linear."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(dim, width), nn.BatchNorm1d(width), nn.ReLU()]
        dim = width
    return nn.Sequential(*layers, nn.Linear(dim, out))


class BYOL(Objective):
    """BYOL (example plugin): predict an EMA target's projection of the other crop, no negatives."""

    @dataclass
    class Config:
        projection_dim: int = positive(64)
        hidden: list[int] = items(positive(), [256], min_len=0)            # projector
        predictor_hidden: list[int] = items(positive(), [256], min_len=0)  # predictor
        momentum: float = interval(0, 1, 0.99, high_open=True)  # EMA decay of the target network per step

    views = 2
    needs_features = True  # the target network embeds the crops itself

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config

    def setup(self, dim: int, data: TrainingData) -> None:
        c = self.config
        self.projector = mlp(dim, c.hidden, c.projection_dim)
        self.predictor = mlp(c.projection_dim, c.predictor_hidden, c.projection_dim)

    def attach(self, encoder: nn.Module) -> None:
        # the target starts as a copy of the online encoder + projector and is never trained
        self.target = nn.Sequential(copy.deepcopy(encoder), copy.deepcopy(self.projector)).requires_grad_(False)

    def after_step(self, step: int, encoder: nn.Module) -> None:
        m = self.config.momentum
        for target, online in ((self.target[0], encoder), (self.target[1], self.projector)):
            for t, o in zip(target.parameters(), online.parameters()):
                t.lerp_(o.detach(), 1 - m)
            for t, o in zip(target.buffers(), online.buffers()):  # BatchNorm statistics: copied
                t.copy_(o)

    def forward(self, embeddings: list[torch.Tensor], targets: torch.Tensor | None,
                features: list[torch.Tensor] | None = None) -> torch.Tensor:
        if features is None:
            raise ValueError("byol needs the crops' features (needs_features = True); musicrep's trainer "
                             "passes them")
        predictions = [F.normalize(self.predictor(self.projector(e)).float(), dim=1) for e in embeddings]
        with torch.no_grad():
            projections = [F.normalize(self.target(f).float(), dim=1) for f in features]
        # each view's prediction regresses the target projection of the other view
        loss = sum((2 - 2 * (p * z).sum(dim=1)).mean()
                   for p, z in ((predictions[0], projections[1]), (predictions[1], projections[0])))
        return loss / 2
