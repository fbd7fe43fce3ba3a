"""How augmentations are applied: per-item randomness from one generator, in two domains.

An augmentation (a plugin of kind ``augmentation``) is an ``nn.Module`` with a ``domain``:
``"wave"`` (``[B, T] -> [B, T]``, before the front end) or ``"spec"`` (``[B, F, frames]`` ->
same, after it). Calling it as ``aug(x, generator)`` draws each item's parameters
(``sample_params``) and then applies them (``apply``); every random number comes from
``generator`` on the batch's device, so one seed reproduces a batch exactly and the test suite
can check the drawn parameters against what the output shows. ``Chain`` runs a list of them
the way the trainer does: wave augmentations, the front end, spectrogram augmentations.

The concrete augmentations are plugins (``musicrep.plugins.augmentations``); this module
holds only the contract and the shared random draws.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

DOMAINS = ("wave", "spec")
Params = dict[str, torch.Tensor]


def check_generator(generator: torch.Generator | None, device: torch.device) -> None:
    """A generator must live where the batch does: draws happen on the batch's device."""
    if generator is not None and generator.device.type != device.type:
        raise ValueError(f"generator is on {generator.device} but the batch is on {device}; make "
                         f"it with torch.Generator(device=batch.device)")


def uniform(n: int | tuple[int, ...], low: float, high: float, generator: torch.Generator | None,
            device: torch.device) -> torch.Tensor:
    """Draws uniform in ``[low, high)`` (float32) of shape ``n``."""
    check_generator(generator, device)
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


def bernoulli(n: int, p: float, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``n`` booleans, each true with probability ``p``: which items an augmentation touches."""
    return uniform(n, 0.0, 1.0, generator, device) < p


def randint(low: torch.Tensor | int, high: torch.Tensor | int, shape: tuple[int, ...],
            generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Integers uniform in ``[low, high]`` (inclusive, broadcast per element) of ``shape``."""
    u = uniform(shape, 0.0, 1.0, generator, device)
    low = torch.as_tensor(low, device=device)
    high = torch.as_tensor(high, device=device)
    drawn = low + torch.floor(u * (high - low + 1).to(u.dtype)).long()
    return torch.minimum(drawn, high.expand_as(drawn))


class Augmentation(nn.Module):
    """Base of augmentation plugins: subclasses set ``domain`` and define the two steps.

    ``sample_params(x, generator)`` returns the per-item parameters as tensors with the batch
    as their first dimension (always ``"apply"``: which items are changed, drawn with the
    config's probability ``p``); ``apply(x, params, generator)`` produces the output from them
    (drawing further randomness, such as noise, from ``generator``).
    """

    domain: str = "wave"

    def __init__(self, config: Any = None) -> None:
        """Subclasses declare a ``Config`` dataclass; without one given, its defaults apply."""
        super().__init__()
        self.config = config if config is not None else self.Config()

    def sample_params(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        raise NotImplementedError

    def apply(self, x: torch.Tensor, params: Params, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        check_input(x, self.domain, type(self).__name__)
        return self.apply(x, self.sample_params(x, generator), generator)


def check_input(x: object, domain: str, who: str) -> None:
    """A wave batch is ``[B, T]``, a spectrogram batch ``[B, F, frames]``; both floating point."""
    dims = 2 if domain == "wave" else 3
    shape = "[batch, time]" if domain == "wave" else "[batch, freq, frames]"
    if not isinstance(x, torch.Tensor) or x.dim() != dims:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{who}: x must be a {shape} tensor, got {got}")
    if not x.is_floating_point():
        raise ValueError(f"{who}: x must be floating point, got {x.dtype}")


class Chain(nn.Module):
    """Augmentations in order, sharing one generator: wave ones, the front end, spec ones.

    The list order is the order applied, so every wave augmentation must come before every
    spectrogram one (the front end sits between them).
    """

    def __init__(self, augmentations: Sequence[nn.Module]) -> None:
        super().__init__()
        wave, spec = [], []
        for i, aug in enumerate(augmentations):
            domain = getattr(aug, "domain", None)
            if domain not in DOMAINS:
                raise ValueError(f"augmentations[{i}] ({type(aug).__name__}) has domain {domain!r}; "
                                 f"expected one of {', '.join(map(repr, DOMAINS))}")
            if domain == "wave" and spec:
                raise ValueError(f"augmentations[{i}] ({type(aug).__name__}) works on waves but comes "
                                 f"after the spectrogram augmentation {type(spec[-1]).__name__}; "
                                 f"list wave augmentations first")
            (wave if domain == "wave" else spec).append(aug)
        self.wave = nn.ModuleList(wave)
        self.spec = nn.ModuleList(spec)

    def apply_wave(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for aug in self.wave:
            x = aug(x, generator)
        return x

    def apply_spec(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for aug in self.spec:
            x = aug(x, generator)
        return x

    def forward(self, x: torch.Tensor, frontend: Callable[[torch.Tensor], torch.Tensor],
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Waves ``[B, T]`` to augmented features: wave augs, ``frontend``, spec augs."""
        return self.apply_spec(frontend(self.apply_wave(x, generator)), generator)
