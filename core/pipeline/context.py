"""What every stage of a pipeline takes: one typed run context, and what a stage gives back.

A stage is a module of ``musicrep.pipeline`` with ``run(context, inputs) -> StageOutcome``:
it reads the validated pipeline, the run directory and the tasks from the context, takes the
previous stage's output as ``inputs``, and returns its own output with a summary for the
lifecycle hooks. ``PipelineRun`` (runner.py) calls the stages in order, firing the hooks.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import torch

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

    def forced(self, stage: str) -> bool:
        """Whether ``--force`` redoes ``stage`` whatever is cached."""
        return stage in self.force


@dataclass(frozen=True)
class StageOutcome:
    """A stage's output (the next stage's input) and its summary for ``musicrep_on_stage_end``."""

    output: Any
    summary: dict[str, Any]


def log(message: str) -> None:
    """A line for the user on stderr; control characters from input (a file name, a label) are
    shown escaped, never sent to the terminal (``musicrep.text.for_terminal``)."""
    print(for_terminal(message, keep_newlines=True), file=sys.stderr, flush=True)


def model_seed(run_seed: int, model_name: str) -> int:
    return int(config_hash([run_seed, model_name]), 16) % (2**31)


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
