"""Runs a pipeline: check the config, plan, then each stage in order (pretrain -> embed ->
probe -> report), every stage cached and resumable.

The stages are modules of ``musicrep.pipeline`` over one ``RunContext``; the run directory's
layout is ``musicrep.rundir``'s. Every result is stored with the content hash of what made it;
a stage whose results exist with the same hash is skipped, one that was interrupted resumes.
The lifecycle hooks ``musicrep_on_stage_start`` / ``_end`` fire here, once per stage and run.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from musicrep.device import resolve_device
from musicrep.distributed import init_from_env, is_main
from musicrep.errors import ConfigError, MusicrepError
from musicrep.layers import OUT, encode_layers, layer_names, unknown_layers
from musicrep.pipeline import conflicts, embed, pretrain, probe, report, survey
from musicrep.pipeline.context import Decision, RunContext, Unloadable, build_model, log, ready_model
from musicrep.pipeline.embed import stored_layers
from musicrep.pipeline.task_check import check_task
from musicrep.pipeline.spec import ModelSpec, PipelineSpec, load_pipeline
from musicrep.registry import Registry, default_registry
from musicrep.rundir import RunDir
from musicrep.tasks import TaskDataError

#: the stages in the order they run; each takes the previous one's output
STAGES = {"pretrain": pretrain, "embed": embed, "probe": probe, "report": report}
#: the stages only the main process runs (under torchrun the others help pre-train and embed)
MAIN_ONLY = ("probe", "report")


class PipelineRun:
    """Checks a pipeline, plans it, and runs its stages in order."""

    def __init__(self, spec: PipelineSpec, run_dir: Path, force: set[str], registry: Registry) -> None:
        self.spec, self.run, self.force, self.registry = spec, RunDir(run_dir), frozenset(force), registry
        self.device = resolve_device(spec.run.device)
        init_from_env(self.device)  # under torchrun: join the process group before any stage

    def context(self, tasks: dict[str, Any]) -> RunContext:
        return RunContext(self.spec, self.run, self.force, self.registry, self.device, tasks)

    def notify(self, hook: str, **kwargs: Any) -> None:
        if is_main():  # lifecycle hooks run on the main process only
            self.registry.notify(hook, run_dir=str(self.run.root), **kwargs)

    def check_compatibility(self, tasks: dict[str, Any]) -> None:
        """Errors that would otherwise surface after hours of work, raised before any."""
        for i, probe_ref in enumerate(self.spec.probes):
            factory = self.registry.info("probe", probe_ref.name).factory
            kinds = getattr(factory, "kinds", ())
            for name, task in tasks.items():
                if kinds and task.kind not in kinds:
                    raise ConfigError(f"probe '{probe_ref.name}' cannot serve task '{name}' of kind "
                                      f"{task.kind} (it serves: {', '.join(kinds)})",
                                      file=str(self.spec.path), section=f"probe.probes[{i}]", key="type")

    def check(self) -> dict[str, Any]:
        """Every error a config can cause without doing the work, raised before the run directory
        exists: the tasks load, the probes serve their kinds, each model's front end and encoder
        embed a window together, each pre-training source exists. Returns the tasks."""
        tasks = {}
        for name, ref in self.spec.tasks.items():
            try:
                tasks[name] = ref.create(self.registry)
            except TaskDataError as exc:  # a missing folder or file: name the TOML section that asked for it
                raise TaskDataError(f"{self.spec.path} [{ref.section}]: {exc}") from None
        for name, task in tasks.items():
            check_task(name, task, str(self.spec.path))
        self.check_compatibility(tasks)
        survey.check_files(tasks, self.spec.embed.on_bad_audio)
        context = self.context(tasks)
        for model in self.spec.models.values():
            if model.load is None:
                self.check_model(context, model)
            else:  # a loaded model is read before the run directory exists: a bad file leaves nothing behind
                embedder = ready_model(context, model)
                if isinstance(embedder, Unloadable):  # its store alone serves it, if it holds every clip
                    embed.stored_key(context, model)  # a store of other settings is refused here
                    log(f"model {model.name}: cannot be loaded ({embedder.reason}); its embeddings come from "
                        f"{model.store} alone")
                else:
                    self.check_layers(model, embedder.encoder)
            if model.pretrain is not None:
                pretrain.gather_sources(context, model)
        conflicts.check_run(context)
        return tasks

    def check_model(self, context: RunContext, model: ModelSpec) -> None:
        """Build the model and embed one silent window: components that each passed their own
        checks but do not fit together (an encoder sized for another front end) fail here."""
        section = model.section
        try:
            embedder = build_model(context, model)
        except MusicrepError as exc:
            raise ConfigError(str(exc), file=str(self.spec.path), section=section) from None
        self.check_layers(model, embedder.encoder)
        try:
            with torch.no_grad():
                wave = torch.zeros(max(1, round(self.spec.embed.window * embedder.sample_rate)))
                windows, _ = embedder.track_windows(wave)
                encode_layers(embedder.encoder, windows[:1], stored_layers(model.layers))
        except MusicrepError as exc:
            raise ConfigError(str(exc), file=str(self.spec.path), section=section) from None
        except (ValueError, TypeError, RuntimeError, IndexError) as exc:  # the components' own complaints
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"its frontend ({model.frontend.name}) and encoder ({model.encoder.name}) do not "
                              f"work together: {message}", file=str(self.spec.path), section=section) from None

    def check_layers(self, model: ModelSpec, encoder: torch.nn.Module) -> None:
        """Every layer the model asks for (its ``layers``, else ``[embed] layers``) is one its
        encoder offers."""
        unknown = unknown_layers(encoder, model.layers)
        if unknown:
            own = "layers" in self.spec.raw["models"][model.replicate_of or model.name]
            offered = layer_names(encoder)
            names = ", ".join(map(repr, unknown))
            raise ConfigError(f"model '{model.name}' ({model.summary}) has no layer {names}; its layers: "
                              f"{', '.join(offered)}" + ("" if len(offered) > 1 else " (its encoder names no "
                                                         "intermediate layers)")
                              + ("" if own else f"; [{model.section}] layers = [...] sets one model's own"),
                              file=str(self.spec.path), section=model.section if own else "embed", key="layers")

    def plan(self, tasks: dict[str, Any]) -> list[tuple[str, Decision]]:
        """What a run would do, ``(name, Decision)`` per stage x model x task (x layer x probe),
        from the same keys and decisions the stages use; ``tasks`` as returned by ``check``."""
        context, planned = self.context(tasks), []
        for model in self.spec.models.values():
            probes = [(layer, p) for layer in model.layers for p in self.spec.probes]
            embedder = ready_model(context, model)
            if isinstance(embedder, Unloadable):  # served by its store alone
                key = embed.stored_key(context, model)
            else:
                ready = True
                if model.pretrain is not None:
                    weights = pretrain.cached_weights(context, model)
                    ready = weights is not None
                    if ready:
                        embedder.load_state_dict(weights)
                    planned.append((model.name, pretrain.decide(context, model, weights)))
                key = embed.embed_key(context, model, embedder) if ready else None
            for task_name, task in tasks.items():
                labels = {(layer, p.name): f"{probe.model_label(context, model.name, layer)}/{task_name}/{p.name}"
                          for layer, p in probes}
                if key is None:
                    planned.append((f"{model.name}/{task_name}",
                                    Decision("embed", model.name, task_name, "run", ["after pre-training"])))
                    planned += [(labels[layer, p.name], Decision("probe", model.name, task_name, "run",
                                                                 ["after pre-training"], p.name, layer))
                                for layer, p in probes]
                    continue
                planned.append((f"{model.name}/{task_name}", embed.decide(context, model, key, task_name)))
                view = embed.planned_view(context, key, task_name, model).digest
                for layer, p in probes:
                    probe_key = probe.probe_key(key.key, view, p, task, model.seed, layer)
                    planned.append((labels[layer, p.name],
                                    probe.decide(context, model.name, task_name, p.name, probe_key, layer)))
        return planned

    def run_stages(self, tasks: dict[str, Any] | None = None) -> str:
        """Every stage in order, each announced to the plugins as it starts and ends, cached or
        not; ``tasks`` as returned by ``check`` (which runs first when not given). Returns the
        report table ("" on the helper ranks under torchrun)."""
        context = self.context(self.check() if tasks is None else tasks)
        info = {"models": list(self.spec.models), "tasks": list(context.tasks)}
        output: Any = None
        for name, stage in STAGES.items():
            if name in MAIN_ONLY and not is_main():
                return ""
            self.notify("musicrep_on_stage_start", stage=name, info={**info, "forced": context.forced(name)})
            outcome = stage.run(context, output)
            self.notify("musicrep_on_stage_end", stage=name, summary=outcome.summary)
            output = outcome.output
        return output


def describe_plan(spec: PipelineSpec, run_dir: Path, tasks: dict[str, Any]) -> list[str]:
    """The run header: models, tasks (their items, classes, splits), settings, and warnings."""
    lines = [f"pipeline {spec.path.name} -> {run_dir}"]
    for model in spec.models.values():
        how = (f"pretrain with {model.objective.name} for {model.pretrain.steps} steps" if model.pretrain
               else "as loaded" if model.load else "random initialisation")
        layers = "" if model.layers == [OUT] else f"; layers {', '.join(model.layers)}, each probed"
        lines.append(f"  model {model.name}: {model.summary}, {how}{layers}")
    if spec.run.seeds:
        lines.append(f"  seeds {', '.join(map(str, spec.run.seeds))}: every model is pre-trained, embedded and probed "
                     "once per seed, as <model>.seed<N>; the report gives their mean and spread")
    lines += [f"  {survey.describe(name, task, spec.path.parent)}" for name, task in tasks.items()]
    lines.append(f"  embed: {spec.embed.window} s windows every {spec.embed.hop} s, {spec.embed.pooling} pooling")
    lines.append(f"  probes: {', '.join(p.name for p in spec.probes)}")
    return lines + [f"  warning: {line}" for line in survey.warnings(tasks, spec.embed.window, spec.embed.on_bad_audio)]


def run_pipeline(path: str | Path, *, force: list[str] | None = None, dry_run: bool = False,
                 run_dir: str | Path | None = None, registry: Registry | None = None,
                 as_json: bool = False) -> str | None:
    """Run the pipeline in the TOML at ``path``; returns the report table (None for a dry run).
    ``as_json`` (with ``dry_run``): print the plan to stdout as JSON, one object per stage x
    model x task (x probe), each with its ``action`` ("run" or "cached") and ``reasons``."""
    force_set = set(force or [])
    for stage in force_set:
        if stage not in STAGES:
            raise ConfigError(f"unknown stage '{stage}' for --force; stages: {', '.join(STAGES)}")
    registry = registry or default_registry()
    spec = load_pipeline(path, registry)
    run_dir = Path(run_dir) if run_dir else spec.run_dir
    pipeline = PipelineRun(spec, run_dir, force_set, registry)
    pipeline.run.check_ours()  # a folder musicrep did not make is refused before any work
    tasks = pipeline.check()  # a config error never leaves a run directory behind
    for line in describe_plan(spec, run_dir, tasks):
        log(line)
    if dry_run:
        planned = pipeline.plan(tasks)
        if as_json:
            print(json.dumps([decision.as_dict() for _, decision in planned], indent=2), flush=True)
        else:
            for name, decision in planned:
                log("  " + decision.line(name, planned=True))
        return None
    worker = int(os.environ.get("RANK", "0")) > 0  # torchrun: rank 0 holds the lock and writes
    with contextlib.nullcontext() if worker else pipeline.run.lock():
        if not worker:
            pipeline.run.start(spec.path.read_text())
        text = pipeline.run_stages(tasks)
    if text:
        print(text)
    return text
