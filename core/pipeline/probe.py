"""The probe stage: every probe on every store, each result keyed by the store's provenance,
the probe's config, the task's metrics and the run seed."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from musicrep import atomic
from musicrep.hashing import config_hash
from musicrep.pipeline.context import RunContext, StageOutcome, log
from musicrep.pipeline.spec import ComponentRef
from musicrep.probing import probe_store
from musicrep.store import EmbeddingStore


def probe_key(context: RunContext, provenance: dict[str, Any], probe: ComponentRef, task: Any) -> str:
    return config_hash([provenance, probe.describe(), list(task.metrics), context.spec.run.seed])


def probe_task(context: RunContext, model: str, task_name: str, store: Path) -> dict[str, float | None]:
    """Every probe on one store: ``{probe: primary test metric}``, None for a cached result."""
    task = context.tasks[task_name]
    with EmbeddingStore(store) as opened:
        made_from = opened.provenance
    done: dict[str, float | None] = {}
    for probe in context.spec.probes:
        key = probe_key(context, made_from, probe, task)
        out = context.run.probe_result(model, task_name, probe.name)
        status = "redo" if context.forced("probe") else context.run.probe_status(model, task_name, probe.name, key)
        if status == "done":
            log(f"probe {model}/{task_name}/{probe.name}: cached")
            done[probe.name] = None
            continue
        if status == "unreadable":
            log(f"probe {model}/{task_name}/{probe.name}: the existing result {out} is unreadable; probing again")
        started = time.perf_counter()
        result = probe_store(store, probe.create(context.registry), metrics=list(task.metrics) or None,
                             seed=context.spec.run.seed, probe_name=probe.name)
        result["key"] = key
        atomic.write_json(out, result)
        done[probe.name] = test = result["metrics"]["test"][result["primary"]]
        log(f"probe {model}/{task_name}/{probe.name}: test {result['primary']} = {test:.4f} "
            f"({time.perf_counter() - started:.1f} s)")
    return done


def run(context: RunContext, stores: dict[tuple[str, str], Path]) -> StageOutcome:
    """Every probe result, from the embed stage's ``{(model, task): store}``."""
    results = {f"{model}/{task}": probe_task(context, model, task, store) for (model, task), store in stores.items()}
    summary = {"results": {key: {p: "cached" if v is None else v for p, v in done.items()}
                           for key, done in results.items()},
               "cached": all(v is None for done in results.values() for v in done.values())}
    return StageOutcome(results, summary)
