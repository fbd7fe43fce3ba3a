"""Built-in pre-training objectives: supervised (on a task's labels) and SimCLR."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from musicrep.config import interval, items, positive
from musicrep.errors import MusicrepError
from musicrep.hookspecs import Factories, hookimpl
from musicrep.objective import Objective, TrainingData


def mlp(dim: int, hidden: list[int], out: int) -> nn.Sequential:
    """Linear layers with ReLU between them: ``dim -> hidden... -> out``."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(dim, width), nn.ReLU(inplace=True)]
        dim = width
    layers.append(nn.Linear(dim, out))
    return nn.Sequential(*layers)


class Supervised(Objective):
    """Supervised on a task's labels: cross-entropy, multi-label BCE or MSE, by the task's kind."""

    @dataclass
    class Config:
        hidden: list[int] = items(positive(), [], min_len=0)  # projector layers before the output head

    views = 1
    needs_labels = True

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config

    def setup(self, dim: int, data: TrainingData) -> None:
        if data.kind is None or data.n_targets == 0:
            raise MusicrepError("the supervised objective needs labelled data: name one task in "
                                "pretrain.data, not an audio folder")
        self.kind = data.kind
        self.head = mlp(dim, self.config.hidden, data.n_targets)

    def forward(self, embeddings: list[torch.Tensor], targets: torch.Tensor | None) -> torch.Tensor:
        logits = self.head(embeddings[0]).float()
        if self.kind == "multiclass":
            return F.cross_entropy(logits, targets.argmax(dim=1))
        if self.kind == "multilabel":
            return F.binary_cross_entropy_with_logits(logits, targets)
        return F.mse_loss(logits, targets)


class SimCLR(Objective):
    """Contrastive (SimCLR): two crops of a clip agree through a projector, NT-Xent loss."""

    @dataclass
    class Config:
        temperature: float = interval(0, 10, 0.1, low_open=True)
        projection_dim: int = positive(128)
        hidden: list[int] = items(positive(), [512], min_len=0)

    views = 2

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config

    def setup(self, dim: int, data: TrainingData) -> None:
        self.projector = mlp(dim, self.config.hidden, self.config.projection_dim)

    def forward(self, embeddings: list[torch.Tensor], targets: torch.Tensor | None) -> torch.Tensor:
        from musicrep.ops import nt_xent

        z1, z2 = (self.projector(e).float() for e in embeddings)
        gather = torch.distributed.is_available() and torch.distributed.is_initialized()
        return nt_xent(z1, z2, self.config.temperature, gather=gather)


@hookimpl
def musicrep_objectives() -> Factories:
    return {"supervised": Supervised, "simclr": SimCLR}
