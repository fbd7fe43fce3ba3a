"""The hook specifications every musicrep plugin implements against (pluggy project "musicrep").

A plugin is any object (usually a module) with functions marked ``@hookimpl``. Component hooks
return ``{name: factory}``; a factory is a callable (usually a class) with a ``Config``
dataclass attribute, called as ``factory(config)``. Plugins are found through the
entry-point group ``musicrep.plugins``; the built-ins register the same way.
"""
from __future__ import annotations

from typing import Any, Callable

import pluggy

PROJECT = "musicrep"
ENTRY_POINT_GROUP = "musicrep.plugins"
#: Bumped when a hook's signature or a component's contract changes incompatibly. A plugin may
#: declare ``MUSICREP_HOOKSPEC_VERSION``; a different major version is refused at load time.
HOOKSPEC_VERSION = 1

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Factories = dict[str, Callable[..., Any]]

#: component kind -> the hook that provides it
COMPONENT_HOOKS: dict[str, str] = {
    "frontend": "musicrep_frontends",
    "augmentation": "musicrep_augmentations",
    "encoder": "musicrep_encoders",
    "objective": "musicrep_objectives",
    "probe": "musicrep_probes",
    "task": "musicrep_tasks",
}
KINDS = tuple(COMPONENT_HOOKS)


@hookspec
def musicrep_frontends() -> Factories:
    """Front ends: ``nn.Module`` mapping waves ``[B, T]`` to features ``[B, F, frames]``."""


@hookspec
def musicrep_augmentations() -> Factories:
    """Augmentations: modules applied to a batch on its device, seeded per call.

    Each has a ``domain``, ``"wave"`` (``[B, T]``) or ``"spec"`` (``[B, F, frames]``), and is
    called as ``aug(x, generator)``; ``musicrep.augment`` holds the contract and ``Chain``.
    """


@hookspec
def musicrep_encoders() -> Factories:
    """Encoders: ``nn.Module`` mapping features ``[B, F, frames]`` to ``[B, D]``, with ``.dim``."""


@hookspec
def musicrep_objectives() -> Factories:
    """Pre-training objectives: ``nn.Module`` computing a scalar loss from a batch."""


@hookspec
def musicrep_probes() -> Factories:
    """Probes: fit on train embeddings, select on valid, predict on test."""


@hookspec
def musicrep_tasks() -> Factories:
    """Tasks: labelled audio items with splits, a kind and default metrics."""


@hookspec
def musicrep_on_stage_start(stage: str, run_dir: str, info: dict[str, Any]) -> None:
    """A pipeline stage (pretrain, embed, probe, report) starts."""


@hookspec
def musicrep_on_train_step(step: int, metrics: dict[str, float], run_dir: str) -> None:
    """A training step finished; ``metrics`` holds at least ``loss`` and ``lr``."""


@hookspec
def musicrep_on_stage_end(stage: str, run_dir: str, summary: dict[str, Any]) -> None:
    """A pipeline stage finished (or was skipped as already done)."""
