"""Named layers of an encoder: the contract that lets a probe read a model at several depths.

An encoder may name intermediate layers. It then has

- ``layer_names``: the names, shallowest first (e.g. ``("block1", "block2", "block3")``), never
  ``"out"``; and
- ``forward_layers(features, names) -> {name: activation}``: one forward pass over a batch of
  windows ``[B, F, frames]`` that returns the activation of every asked name, ``"out"`` (the
  encoder's embedding, what ``forward`` returns) included when asked. An activation is a conv
  map ``[B, C, F', T']``, a sequence ``[B, C, T']``, a vector ``[B, D]``, or a tuple of these
  (one per pathway, e.g. SlowFast's slow and fast maps at different frame rates).

The core pools each activation over time only (the last axis of a map), keeping channels x
frequency, flattened, so the frequency axis an early layer still holds reaches the probe.
``"out"`` is the embedding unchanged. An encoder without ``layer_names`` offers only ``"out"``.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:  # torch is imported where a layer is pooled: the store and report read names only
    import torch
    from torch import nn

OUT = "out"
#: the report's name for the layer chosen on valid, per task (``musicrep.report.best_layers``)
BEST = "best"
#: one layer's output: a tensor, or one per pathway
Activation = Union["torch.Tensor", tuple["torch.Tensor", ...]]
#: what a layer name may be: it names an HDF5 group and a folder of probe results
LAYER_PATTERN = r"[A-Za-z0-9_-]+"


def layer_names(encoder: nn.Module) -> tuple[str, ...]:
    """Every layer ``encoder`` offers, shallowest first, ``"out"`` last."""
    names = tuple(getattr(encoder, "layer_names", ()))
    for name in names:
        if name in (OUT, BEST) or not re.fullmatch(LAYER_PATTERN, str(name)):
            raise ValueError(f"encoder {type(encoder).__name__} names a layer {name!r}; layer names are letters, "
                             f"digits, '_' and '-', and neither {OUT!r} (its embedding's name) nor {BEST!r} (the "
                             "report's layer chosen on valid)")
    return (*names, OUT)


def unknown_layers(encoder: nn.Module, wanted: Sequence[str]) -> list[str]:
    """The names of ``wanted`` that ``encoder`` does not offer."""
    offered = layer_names(encoder)
    return [name for name in wanted if name not in offered]


def pool_over_time(activation: Activation) -> torch.Tensor:
    """An activation as ``[B, D]``: a map's mean over time (its last axis), flattened; the
    pathways of a tuple side by side."""
    import torch

    if isinstance(activation, (tuple, list)):
        return torch.cat([pool_over_time(part) for part in activation], dim=1)
    if activation.dim() == 2:
        return activation
    if activation.dim() not in (3, 4):
        raise ValueError(f"a layer's activation must be [B, D], [B, C, T] or [B, C, F, T], got shape "
                         f"{tuple(activation.shape)}")
    return activation.mean(dim=-1).flatten(1)


def encode_layers(encoder: nn.Module, windows: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """``{name: [B, D_name]}`` for windows ``[B, F, frames]``, in one forward pass."""
    if tuple(names) == (OUT,):
        return {OUT: encoder(windows)}
    activations = encoder.forward_layers(windows, tuple(names))
    missing = [name for name in names if name not in activations]
    if missing:
        raise RuntimeError(f"encoder {type(encoder).__name__}.forward_layers did not return the layers "
                           f"{', '.join(missing)}")
    return {name: activations[name] if name == OUT else pool_over_time(activations[name]) for name in names}


def collect_layers(names: Sequence[str], activations: Iterator[Activation], wanted: Sequence[str],
                   head: Callable[[Activation], torch.Tensor]) -> dict[str, Activation]:
    """``forward_layers`` of an encoder that is a chain of blocks and a head: ``activations``
    yields each block's output in the order of ``names`` (lazily: a generator running the
    blocks), ``head`` makes the embedding from the last one. Runs no block past the deepest
    one asked for, and the head only when ``"out"`` is asked for."""
    found: dict[str, Activation] = {}
    rest = set(wanted) - {OUT}
    last = None
    for name, activation in zip(names, activations):
        last = activation
        if name in rest:
            found[name] = activation
            rest.discard(name)
        if not rest and OUT not in wanted:
            break
    if OUT in wanted:
        found[OUT] = head(last)
    return found
