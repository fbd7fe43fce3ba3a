"""The probe stage: every probe on every asked layer of every task's view, each result keyed
(``musicrep.provenance.ProbeKey``) by the store's embed key, the view's digest (the task's
items, their audio's content keys, labels and splits), the probe's config, the task's metrics,
the model's seed and the layer; a rerun says why (``decide``)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from musicrep import atomic
from musicrep.interrupts import stop_if_interrupted
from musicrep.layers import OUT
from musicrep.pipeline.context import Decision, RunContext, StageOutcome, log
from musicrep.pipeline.embed import Embedded
from musicrep.pipeline.spec import ComponentRef
from musicrep.probing import RESULT_FORMAT, probe_store
from musicrep.provenance import ProbeKey, component_fields, reasons
from musicrep.store import EmbeddingStore


def probe_key(embedding: str, view: str, probe: ComponentRef, task: Any, seed: int, layer: str = OUT) -> ProbeKey:
    return ProbeKey(embedding, view, component_fields(probe), tuple(task.metrics), seed, RESULT_FORMAT, layer)


def model_label(context: RunContext, model: str, layer: str) -> str:
    """How messages name a model's layer: ``model/layer`` when any model of the run probes
    another layer than "out" (as the table does), else the model's name alone, as before layers
    existed."""
    layered = any(m.layers != [OUT] for m in context.spec.models.values())
    return f"{model}/{layer}" if layered else model


def decide(context: RunContext, model: str, task_name: str, probe: str, key: ProbeKey, layer: str = OUT) -> Decision:
    """Whether one probe result must be made again, and why (naming the field that changed)."""
    decision = Decision("probe", model, task_name, "run", probe=probe, layer=layer)
    for stage in ("embed", "probe"):
        if context.forced(stage):
            decision.reasons = [f"--force {stage}"]
            return decision
    out = context.run.probe_result(model, task_name, probe, layer)
    try:
        result = json.loads(out.read_text(encoding="utf-8"))
    except FileNotFoundError:
        decision.reasons = ["no result yet"]
        return decision
    except (OSError, ValueError):  # results are written atomically; this is damage from outside
        decision.reasons = [f"the existing result {out} is unreadable"]
        return decision
    if isinstance(result, dict) and result.get("key") == key.key:
        decision.action = "cached"
        return decision
    before = result.get("key_fields") if isinstance(result, dict) else None
    decision.reasons = (reasons(before, key.fields(), ProbeKey.INPUTS) if isinstance(before, dict)
                        else ["made by an older musicrep"]) or ["key changed"]
    decision.reasons = [{"embedding changed": "embeddings changed",
                         "view changed": "task items, audio or labels changed"}.get(r, r) for r in decision.reasons]
    return decision


def probe_task(context: RunContext, model: str, task_name: str, embedded: Embedded) -> dict[str, float | None]:
    """Every probe on every asked layer of one view: ``{probe or layer/probe: primary test
    metric}``, None for a cached result."""
    task = context.tasks[task_name]
    with EmbeddingStore(embedded.view) as opened:  # its digest is checked against its contents
        view = opened.digest
    done: dict[str, float | None] = {}
    seed = context.spec.models[model].seed
    for layer in context.spec.models[model].layers:
        for probe in context.spec.probes:
            stop_if_interrupted()
            name = f"{model_label(context, model, layer)}/{task_name}/{probe.name}"
            entry = probe.name if layer == OUT else f"{layer}/{probe.name}"
            key = probe_key(embedded.key.key, view, probe, task, seed, layer)
            decision = decide(context, model, task_name, probe.name, key, layer)
            if decision.action == "cached":
                log(decision.line(name))
                done[entry] = None
                continue
            log(decision.line(name))
            started = time.perf_counter()
            result = probe_store(embedded.view, probe.create(context.registry), metrics=list(task.metrics) or None,
                                 seed=seed, probe_name=probe.name, layer=layer)
            result["key"], result["key_fields"] = key.key, key.fields()
            atomic.write_json(context.run.probe_result(model, task_name, probe.name, layer), result)
            done[entry] = test = result["metrics"]["test"][result["primary"]]
            log(f"probe {name}: test {result['primary']} = {test:.4f} ({time.perf_counter() - started:.1f} s)")
    return done


def run(context: RunContext, stores: dict[tuple[str, str], Embedded]) -> StageOutcome:
    """Every probe result, from the embed stage's ``{(model, task): Embedded}``."""
    results = {f"{model}/{task}": probe_task(context, model, task, embedded)
               for (model, task), embedded in stores.items()}
    summary = {"results": {key: {p: "cached" if v is None else v for p, v in done.items()}
                           for key, done in results.items()},
               "cached": all(v is None for done in results.values() for v in done.values())}
    return StageOutcome(results, summary)
