"""What every stage of a pipeline takes: one typed run context, and what a stage gives back.

A stage is a module of ``musicrep.pipeline`` with ``run(context, inputs) -> StageOutcome``:
it reads the validated pipeline, the run directory and the tasks from the context, takes the
previous stage's output as ``inputs``, and returns its own output with a summary for the
lifecycle hooks. ``PipelineRun`` (runner.py) calls the stages in order, firing the hooks.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import torch

from musicrep.content import ContentIndex
from musicrep.hashing import config_hash
from musicrep.model import Embedder
from musicrep.pipeline.spec import ModelSpec, PipelineSpec
from musicrep.registry import Registry
from musicrep.rundir import RunDir
from musicrep.text import for_terminal


@dataclass(frozen=True)
class RunContext:
    """One run of a pipeline: its validated config, its directory, its tasks, where it computes."""

    spec: PipelineSpec
    run: RunDir
    force: frozenset[str]
    registry: Registry
    device: torch.device
    #: the tasks, built (and their items read) once by ``PipelineRun.check``
    tasks: dict[str, Any]
    #: each task's content keys, computed once (``content_keys``)
    _keys: dict[str, list[str]] = field(default_factory=dict)
    _index: list[ContentIndex] = field(default_factory=list)

    def forced(self, stage: str) -> bool:
        """Whether ``--force`` redoes ``stage`` whatever is cached."""
        return stage in self.force

    @property
    def content_index(self) -> ContentIndex:
        """The run's index of audio digests (``RUN_DIR/content-index``; saved by the embed stage)."""
        if not self._index:
            self._index.append(ContentIndex(self.run.content_index))
        return self._index[0]

    def content_keys(self, task_name: str) -> list[str]:
        """The content key of every item of a task (``Task.content_key``), in its order. A file
        that cannot be read gets a key of its path: the extractor then names it as bad audio."""
        if task_name not in self._keys:
            from musicrep.embed import content_keys

            self._keys[task_name] = content_keys(self.tasks[task_name], self.content_index)
        return self._keys[task_name]


@dataclass(frozen=True)
class StageOutcome:
    """A stage's output (the next stage's input) and its summary for ``musicrep_on_stage_end``."""

    output: Any
    summary: dict[str, Any]


@dataclass
class Decision:
    """What a stage does for one model (x task (x probe)): "run" or "cached", and why."""

    stage: str
    model: str
    task: str | None
    action: str
    reasons: list[str] = field(default_factory=list)
    probe: str | None = None
    layer: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {"stage": self.stage, "model": self.model, "task": self.task, "action": self.action,
               "reasons": list(self.reasons)}
        if self.probe is not None:
            out.update(probe=self.probe, layer=self.layer)
        return out

    def line(self, name: str, planned: bool = False) -> str:
        """``embed m/t: cached``, or the reasons it runs (``to do: ...`` in a plan)."""
        if self.action == "cached":
            return f"{self.stage} {name}: cached"
        why = "; ".join(self.reasons)
        return f"{self.stage} {name}: to do ({why})" if planned else f"{self.stage} {name}: {why}"


def log(message: str) -> None:
    """A line for the user on stderr; control characters from input (a file name, a label) are
    shown escaped, never sent to the terminal (``musicrep.text.for_terminal``)."""
    print(for_terminal(message, keep_newlines=True), file=sys.stderr, flush=True)


def model_seed(run_seed: int, model_name: str) -> int:
    return int(config_hash([run_seed, model_name]), 16) % (2**31)


@dataclass(frozen=True)
class Unloadable:
    """A model with a ``store`` whose ``load`` failed (a checkpoint gone, a named model not
    installed): its embeddings come from the store alone (``embed.stored_key``)."""

    reason: str


def ready_model(context: RunContext, model: ModelSpec) -> Embedder | Unloadable:
    """``build_model``, except that a model that only embeds (``load`` and ``store``, no
    pre-training) and cannot be loaded is ``Unloadable``: the clips its store holds still serve."""
    from musicrep.errors import MusicrepError

    try:
        return build_model(context, model)
    except MusicrepError as exc:
        if model.load is None or not model.store or model.pretrain is not None:
            raise
        return Unloadable(" ".join(str(exc).split()))


def build_model(context: RunContext, model: ModelSpec) -> Embedder:
    """The model before pre-training: loaded, or at its (seeded) random initialisation."""
    spec = context.spec
    torch.manual_seed(model_seed(model.seed, model.name))
    windowing = {"window": spec.embed.window, "hop": spec.embed.hop, "pooling": spec.embed.pooling,
                 "windowing": spec.embed.windowing}
    if model.load is not None:
        from musicrep.load import load_model

        return load_model(model.load, weights=model.weights, **windowing, **model.load_switches).embedder
    return Embedder(model.frontend.create(context.registry), model.encoder.create(context.registry), **windowing)
