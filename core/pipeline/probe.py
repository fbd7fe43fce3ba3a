"""The probe stage: every probe on every asked layer of every store (``layers``), each result
keyed by the store's provenance, the probe's config, the task's metrics, the model's seed and
the layer (the embedding, "out", keeps the key it had before layers existed)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from musicrep import atomic
from musicrep.hashing import config_hash
from musicrep.interrupts import stop_if_interrupted
from musicrep.layers import OUT
from musicrep.pipeline.context import RunContext, StageOutcome, log
from musicrep.pipeline.spec import ComponentRef
from musicrep.probing import RESULT_FORMAT, probe_store
from musicrep.store import EmbeddingStore


def probe_key(provenance: dict[str, Any], probe: ComponentRef, task: Any, seed: int, layer: str = OUT) -> str:
    return config_hash([provenance, probe.describe(), list(task.metrics), seed, RESULT_FORMAT,
                        *([layer] if layer != OUT else [])])


def model_label(context: RunContext, model: str, layer: str) -> str:
    """How messages name a model's layer: ``model/layer`` when any model of the run probes
    another layer than "out" (as the table does), else the model's name alone, as before layers
    existed."""
    layered = any(m.layers != [OUT] for m in context.spec.models.values())
    return f"{model}/{layer}" if layered else model


def probe_task(context: RunContext, model: str, task_name: str, store: Path) -> dict[str, float | None]:
    """Every probe on every asked layer of one store: ``{probe or layer/probe: primary test
    metric}``, None for a cached result."""
    task = context.tasks[task_name]
    with EmbeddingStore(store) as opened:
        made_from = opened.provenance
    done: dict[str, float | None] = {}
    seed = context.spec.models[model].seed
    for layer in context.spec.models[model].layers:
        for probe in context.spec.probes:
            stop_if_interrupted()
            name = f"{model_label(context, model, layer)}/{task_name}/{probe.name}"
            entry = probe.name if layer == OUT else f"{layer}/{probe.name}"
            key = probe_key(made_from, probe, task, seed, layer)
            out = context.run.probe_result(model, task_name, probe.name, layer)
            status = ("redo" if context.forced("probe")
                      else context.run.probe_status(model, task_name, probe.name, key, layer))
            if status == "done":
                log(f"probe {name}: cached")
                done[entry] = None
                continue
            if status == "unreadable":
                log(f"probe {name}: the existing result {out} is unreadable; probing again")
            started = time.perf_counter()
            result = probe_store(store, probe.create(context.registry), metrics=list(task.metrics) or None,
                                 seed=seed, probe_name=probe.name, layer=layer)
            result["key"] = key
            atomic.write_json(out, result)
            done[entry] = test = result["metrics"]["test"][result["primary"]]
            log(f"probe {name}: test {result['primary']} = {test:.4f} ({time.perf_counter() - started:.1f} s)")
    return done


def run(context: RunContext, stores: dict[tuple[str, str], Path]) -> StageOutcome:
    """Every probe result, from the embed stage's ``{(model, task): store}``."""
    results = {f"{model}/{task}": probe_task(context, model, task, store) for (model, task), store in stores.items()}
    summary = {"results": {key: {p: "cached" if v is None else v for p, v in done.items()}
                           for key, done in results.items()},
               "cached": all(v is None for done in results.values() for v in done.values())}
    return StageOutcome(results, summary)
