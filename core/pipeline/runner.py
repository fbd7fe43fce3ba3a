"""Runs a pipeline: pretrain -> embed -> probe -> report, each stage cached and resumable.

Every result is stored under the run directory with the content hash of what made it; a
stage whose result exists with the same hash is skipped, one that was interrupted resumes.

    RUN_DIR/models/<model>/...            pre-training checkpoints
    RUN_DIR/embeddings/<model>/<task>.h5  embedding stores
    RUN_DIR/probes/<model>/<task>/<probe>.json
    RUN_DIR/report.md, results.json, results.csv
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import torch

from musicrep import atomic
from musicrep._version import __version__
from musicrep.device import resolve_device
from musicrep.distributed import barrier, init_from_env, is_main, world
from musicrep.embed import extract
from musicrep.errors import ConfigError, MusicrepError
from musicrep.hashing import config_hash, state_hash
from musicrep.model import Embedder
from musicrep.pipeline import conflicts
from musicrep.pipeline.pretrain import cached_weights, gather_sources, pretrain_description, pretrain_stage
from musicrep.pipeline.task_check import check_task
from musicrep.pipeline.spec import ModelSpec, PipelineSpec, load_pipeline
from musicrep.probing import probe_store
from musicrep.registry import Registry, default_registry
from musicrep.report import write_report
from musicrep.store import EmbeddingStore, finished_provenance, is_complete, join_shards, store_status
from musicrep.train import training_key

STAGES = ("pretrain", "embed", "probe", "report")
_HELD: set[Path] = set()  # the run locks this process holds


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Refuse a second ``musicrep run`` on a run directory that is in use.

    The lock is a POSIX record lock (``lockf``) on ``RUN_DIR/.lock``. The kernel drops it when its
    holder dies, however it dies; and unlike ``flock`` it is not shared with forked children, so
    the data-loader workers that outlive a killed run for a few seconds do not hold it. The file
    holds the holder's pid, for the message a second run prints. A record lock does not stop its
    own process, so the process also keeps a set of the run directories it holds.
    """
    with atomic.writing(run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / ".lock"
    if lock.resolve() in _HELD:  # checked before opening: closing any handle would drop the lock
        raise _in_use(run_dir, lock, str(os.getpid()))
    with atomic.writing(lock):
        handle = open(lock, "a+")  # not "w": that would wipe the holder's pid before we know we lost
    try:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EAGAIN):
            raise
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise _in_use(run_dir, lock, holder) from None
    _HELD.add(lock.resolve())
    try:
        with atomic.writing(lock):
            handle.truncate(0)
            handle.write(str(os.getpid()))
            handle.flush()
        yield
    finally:
        _HELD.discard(lock.resolve())
        handle.close()  # closing releases the lock


def _in_use(run_dir: Path, lock: Path, holder: str) -> MusicrepError:
    return MusicrepError(f"{run_dir} is in use by another musicrep run (pid {holder} holds {lock}); "
                         f"wait for it to finish, or give this run another [run] name or --run-dir")


def probe_status(path: Path, key: str) -> str:
    """"done" (a result for exactly this key), "missing", "stale" (another key) or "unreadable"."""
    try:
        result = json.loads(path.read_text())
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError):  # results are written atomically; this is damage from outside
        return "unreadable"
    return "done" if isinstance(result, dict) and result.get("key") == key else "stale"


def model_seed(run_seed: int, model_name: str) -> int:
    return int(config_hash([run_seed, model_name]), 16) % (2**31)


def build_model(spec: PipelineSpec, model: ModelSpec, registry: Registry) -> Embedder:
    """The model before pre-training: loaded, or at its (seeded) random initialisation."""
    torch.manual_seed(model_seed(spec.run.seed, model.name))
    windowing = {"window": spec.embed.window, "hop": spec.embed.hop, "pooling": spec.embed.pooling,
                 "windowing": spec.embed.windowing}
    if model.load is not None:
        from musicrep.load import load_model

        return load_model(model.load, weights=model.weights, **windowing).embedder
    frontend = model.frontend.create(registry)
    encoder = model.encoder.create(registry)
    return Embedder(frontend, encoder, **windowing)


class PipelineRun:
    def __init__(self, spec: PipelineSpec, run_dir: Path, force: set[str], registry: Registry) -> None:
        self.spec, self.run_dir, self.force, self.registry = spec, run_dir, force, registry
        self.device = resolve_device(spec.run.device)
        init_from_env(self.device)  # under torchrun: join the process group before any stage

    @staticmethod
    def log(message: str) -> None:
        log(message)

    def notify(self, hook: str, **kwargs: Any) -> None:
        self.registry.notify(hook, run_dir=str(self.run_dir), **kwargs)

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
        tasks = {name: ref.create(self.registry) for name, ref in self.spec.tasks.items()}
        for name, task in tasks.items():
            check_task(name, task, str(self.spec.path))
        self.check_compatibility(tasks)
        for model in self.spec.models.values():
            if model.load is None:
                self.check_model(model)
            if model.pretrain is not None:
                gather_sources(self, model, tasks)
        self.check_conflicts()
        return tasks

    def check_model(self, model: ModelSpec) -> None:
        """Build the model and embed one silent window: components that each passed their own
        checks but do not fit together (an encoder sized for another front end) fail here."""
        section = f"models.{model.name}"
        try:
            embedder = build_model(self.spec, model, self.registry)
            with torch.no_grad():
                wave = torch.zeros(max(1, round(self.spec.embed.window * embedder.sample_rate)))
                windows, _ = embedder.track_windows(wave)
                embedder.encoder(windows[:1])
        except MusicrepError as exc:
            raise ConfigError(str(exc), file=str(self.spec.path), section=section) from None
        except (ValueError, TypeError, RuntimeError, IndexError) as exc:  # the components' own complaints
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"its frontend ({model.frontend.name}) and encoder ({model.encoder.name}) do not "
                              f"work together: {message}", file=str(self.spec.path), section=section) from None

    def model(self, model: ModelSpec, tasks: dict[str, Any]) -> Embedder:
        embedder = build_model(self.spec, model, self.registry)
        if model.pretrain is not None:
            pretrain_stage(self, model, embedder, tasks)
        return embedder

    def store_path(self, model: ModelSpec, task_name: str) -> Path:
        return self.run_dir / "embeddings" / model.name / f"{task_name}.h5"

    def store_config(self, model: ModelSpec, task_name: str) -> dict[str, Any]:
        """The configuration part of a store's provenance: known before any work is done."""
        return {**model.describe(), "window": self.spec.embed.window, "hop": self.spec.embed.hop,
                "pooling": self.spec.embed.pooling, "windowing": self.spec.embed.windowing,
                "task": self.spec.tasks[task_name].describe()}

    def provenance(self, model: ModelSpec, embedder: Embedder, task_name: str, task: Any) -> dict[str, Any]:
        """What a store holds: its config plus its inputs (the weights' hash, the task's items)."""
        config = self.store_config(model, task_name)
        return {**config, "model": state_hash(embedder.state_dict()),
                "task": {**config["task"], "items": task.fingerprint()}, "musicrep": __version__}

    def check_conflicts(self) -> None:
        """Refuse, before any work, to replace results this run directory made with another config."""
        for model in self.spec.models.values():
            if model.pretrain is not None and "pretrain" not in self.force:
                stored = conflicts.stored_pretraining(self.run_dir / "models" / model.name)
                description = pretrain_description(self, model)
                if stored is not None and stored.get("key") != training_key(description):
                    changes = conflicts.differences(stored.get("description", {}), description)
                    raise conflicts.conflict(self.spec.path, model.name, f"the pre-training of model '{model.name}'",
                                             changes, "pretrain")
            if "embed" in self.force:
                continue
            for task_name in self.spec.tasks:
                stored = finished_provenance(self.store_path(model, task_name))
                if stored is None:
                    continue
                before = conflicts.config_of(stored)
                after = conflicts.as_stored(self.store_config(model, task_name))
                if before != after:
                    changes = conflicts.differences(before, after)
                    raise conflicts.conflict(self.spec.path, model.name, f"model '{model.name}''s embeddings of "
                                             f"task '{task_name}'", changes, "embed")

    def probe_path(self, model: ModelSpec, task_name: str, probe_ref: Any) -> Path:
        return self.run_dir / "probes" / model.name / task_name / f"{probe_ref.name}.json"

    def probe_key(self, provenance: dict[str, Any], probe_ref: Any, task: Any) -> str:
        return config_hash([provenance, probe_ref.describe(), list(task.metrics), self.spec.run.seed])

    def probe_done(self, path: Path, key: str) -> bool:
        return "probe" not in self.force and probe_status(path, key) == "done"

    def embed(self, model: ModelSpec, embedder: Embedder, task_name: str, task: Any) -> Path:
        store = self.store_path(model, task_name)
        provenance = self.provenance(model, embedder, task_name, task)
        status = store_status(store, provenance)
        if status not in ("missing", "complete"):
            log(f"embed {model.name}/{task_name}: the existing store is {status}; embedding again")
        if "embed" in self.force and store.exists():
            store.unlink()
        elif status == "complete":
            log(f"embed {model.name}/{task_name}: cached")
            return store
        rank, world_size = world()
        target = store if world_size == 1 else store.with_name(f"{store.stem}.rank{rank}-of-{world_size}.h5")
        summary = extract(embedder, task, target, provenance, batch_size=self.spec.embed.batch_size,
                          on_bad_audio=self.spec.embed.on_bad_audio, device=self.device,
                          flush_every=self.spec.embed.checkpoint_every,
                          shard=(rank, world_size), progress=is_main())
        if world_size > 1:  # every rank wrote its shard; rank 0 joins them into one store
            barrier()
            if is_main():
                join_shards([store.with_name(f"{store.stem}.rank{r}-of-{world_size}.h5")
                             for r in range(world_size)], store)
        log(f"embed {model.name}/{task_name}: {summary.tracks} tracks, {summary.windows} windows, "
            f"{summary.skipped} skipped, {summary.x_realtime:.0f}x realtime")
        if summary.bad_files:  # by name: the user must be able to find and fix each one
            shown = "; ".join(f"{b['path']} ({b['reason']})" for b in summary.bad_files[:20])
            more = f"; and {len(summary.bad_files) - 20} more" if len(summary.bad_files) > 20 else ""
            log(f"embed {model.name}/{task_name}: skipped bad audio: {shown}{more} "
                f"(all listed in the store's 'skipped' attribute)")
        self.notify("musicrep_on_stage_end", stage="embed", summary={"model": model.name, "task": task_name,
                                                                     **summary.as_dict()})
        return store

    def probe(self, model: ModelSpec, task_name: str, task: Any, store: Path) -> None:
        with EmbeddingStore(store) as opened:
            store_key = opened.provenance
        for probe_ref in self.spec.probes:
            key = self.probe_key(store_key, probe_ref, task)
            out = self.probe_path(model, task_name, probe_ref)
            status = "redo" if "probe" in self.force else probe_status(out, key)
            if status == "done":
                log(f"probe {model.name}/{task_name}/{probe_ref.name}: cached")
                continue
            if status == "unreadable":
                log(f"probe {model.name}/{task_name}/{probe_ref.name}: the existing result {out} is unreadable; "
                    f"probing again")
            started = time.perf_counter()
            result = probe_store(store, probe_ref.create(self.registry), metrics=list(task.metrics) or None,
                                 seed=self.spec.run.seed, probe_name=probe_ref.name)
            result["key"] = key
            atomic.write_json(out, result)
            test = result["metrics"]["test"][result["primary"]]
            log(f"probe {model.name}/{task_name}/{probe_ref.name}: test {result['primary']} = {test:.4f} "
                f"({time.perf_counter() - started:.1f} s)")

    def plan(self, tasks: dict[str, Any]) -> list[str]:
        """What a run would do: each stage's work, cached or to do, computed from the same keys;
        ``tasks`` as returned by ``check``."""
        lines = []
        for model in self.spec.models.values():
            embedder = build_model(self.spec, model, self.registry)
            ready = True
            if model.pretrain is not None:
                weights = cached_weights(self, model)
                ready = weights is not None
                if ready:
                    embedder.load_state_dict(weights)
                lines.append(f"  pretrain {model.name}: {'cached' if ready else 'to do'}")
            for task_name, task in tasks.items():
                if not ready:
                    lines.append(f"  embed {model.name}/{task_name}: to do (after pre-training)")
                    lines += [f"  probe {model.name}/{task_name}/{p.name}: to do" for p in self.spec.probes]
                    continue
                provenance = self.provenance(model, embedder, task_name, task)
                stored = "embed" not in self.force and is_complete(self.store_path(model, task_name), provenance)
                lines.append(f"  embed {model.name}/{task_name}: {'cached' if stored else 'to do'}")
                for probe_ref in self.spec.probes:
                    done = stored and self.probe_done(self.probe_path(model, task_name, probe_ref),
                                                      self.probe_key(provenance, probe_ref, task))
                    lines.append(f"  probe {model.name}/{task_name}/{probe_ref.name}: {'cached' if done else 'to do'}")
        return lines

    def run(self, tasks: dict[str, Any] | None = None) -> str:
        """Every stage; ``tasks`` as returned by ``check`` (which runs first when not given)."""
        tasks = self.check() if tasks is None else tasks
        stores = {}
        for model in self.spec.models.values():
            embedder = self.model(model, tasks)
            for task_name, task in tasks.items():
                stores[model.name, task_name] = self.embed(model, embedder, task_name, task)
        if not is_main():  # under torchrun the other ranks helped pre-train and embed; rank 0 probes
            return ""
        for (model_name, task_name), store in stores.items():
            self.probe(self.spec.models[model_name], task_name, tasks[task_name], store)
        text = write_report(self.run_dir)
        self.notify("musicrep_on_stage_end", stage="report", summary={"report": str(self.run_dir / "report.md")})
        return text


def describe_plan(spec: PipelineSpec, run_dir: Path) -> list[str]:
    lines = [f"pipeline {spec.path.name} -> {run_dir}"]
    for model in spec.models.values():
        how = (f"pretrain with {model.objective.name} for {model.pretrain.steps} steps" if model.pretrain
               else "as loaded" if model.load else "random initialisation")
        lines.append(f"  model {model.name}: {model.summary}, {how}")
    for name, task in spec.tasks.items():
        lines.append(f"  task {name}: {task.name}")
    lines.append(f"  embed: {spec.embed.window} s windows every {spec.embed.hop} s, {spec.embed.pooling} pooling")
    lines.append(f"  probes: {', '.join(p.name for p in spec.probes)}")
    return lines


def run_pipeline(path: str | Path, *, force: list[str] | None = None, dry_run: bool = False,
                 run_dir: str | Path | None = None, registry: Registry | None = None) -> str | None:
    """Run the pipeline in the TOML at ``path``; returns the report table (None for a dry run)."""
    force_set = set(force or [])
    for stage in force_set:
        if stage not in STAGES:
            raise ConfigError(f"unknown stage '{stage}' for --force; stages: {', '.join(STAGES)}")
    registry = registry or default_registry()
    spec = load_pipeline(path, registry)
    run_dir = Path(run_dir) if run_dir else spec.run_dir
    for line in describe_plan(spec, run_dir):
        log(line)
    pipeline = PipelineRun(spec, run_dir, force_set, registry)
    tasks = pipeline.check()  # a config error never leaves a run directory behind
    if dry_run:
        for line in pipeline.plan(tasks):
            log(line)
        return None
    worker = int(os.environ.get("RANK", "0")) > 0  # torchrun: rank 0 holds the lock and writes
    with contextlib.nullcontext() if worker else run_lock(run_dir):
        if not worker:
            for folder in ("models", "embeddings", "probes"):  # what killed runs left half-written
                atomic.remove_leftovers(run_dir / folder)
            atomic.write_text(run_dir / "pipeline.toml", spec.path.read_text())
        text = pipeline.run(tasks)
    if text:
        print(text)
    return text
