"""The hook specifications every musicrep plugin implements against (pluggy project "musicrep").

A plugin is any object (usually a module) with functions marked ``@hookimpl``. Component hooks
return ``{name: factory}``; a factory is a callable (usually a class) with a ``Config``
dataclass attribute, called as ``factory(config)`` -- except a ready model's, which
``musicrep.load_model`` calls as ``factory(weights, overrides)``. Plugins are found through the
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
    "model": "musicrep_models",
}
KINDS = tuple(COMPONENT_HOOKS)
#: kinds whose factories take no ``Config``: a ready model's options are its windowing and its
#: encoder's, checked when the model is built
UNCONFIGURED_KINDS = ("model",)


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
def musicrep_models() -> Factories:
    """Ready-made models by name, for ``musicrep.load_model(name)`` and ``[models.x] load = name``.

    A factory is called as ``factory(weights, overrides)``: ``weights`` is the path the user gave
    (or None for a random initialisation), ``overrides`` the windowing keys (``window``, ``hop``,
    ``pooling``, ``windowing``) and encoder options the user set. It returns a
    ``musicrep.model.Embedder`` with every tensor of ``weights`` checked
    (``musicrep.load.check_state_dict`` names the file and tensor that do not fit).
    """


@hookspec
def musicrep_on_stage_start(stage: str, run_dir: str, info: dict[str, Any]) -> None:
    """A pipeline stage (pretrain, embed, probe, report) starts, once per run, cached or not.

    ``info`` holds ``models`` and ``tasks`` (the names the stage works over) and ``forced``
    (whether ``--force`` redoes it).
    """


@hookspec
def musicrep_on_train_start(run_dir: str, start_step: int, steps: int) -> None:
    """The trainer starts (``start_step`` 0) or resumes training one model; ``run_dir`` is
    the model's folder. Steps after ``start_step`` are done again, so their logs are stale."""


@hookspec
def musicrep_on_train_step(step: int, metrics: dict[str, float], run_dir: str) -> None:
    """A training step finished; ``metrics`` holds at least ``loss`` and ``lr``."""


@hookspec
def musicrep_on_stage_end(stage: str, run_dir: str, summary: dict[str, Any]) -> None:
    """A pipeline stage finished, once per run; ``summary["cached"]`` is true when every result
    it would make was already there (nothing was computed)."""
