"""A run directory binds each model name to one configuration.

Stages are cached by content hash, so a changed config would silently recompute, and in doing
so overwrite, the results a run directory already holds under that model's name. That is how
results get lost (a report quoted yesterday no longer matches the files), so instead a run
that would replace results made with another config stops before any work and says what
changed; the user renames the model to keep both, or forces the stage to replace them.
Changed *inputs* (new files in a task folder, new weights after a forced pre-training) are
not conflicts: recomputing for them is the cache doing its job.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from musicrep.errors import ConfigError
from musicrep.pipeline.context import RunContext
from musicrep.pipeline.embed import store_config
from musicrep.pipeline.pretrain import pretrain_description
from musicrep.train import training_key


def as_stored(value: Any) -> Any:
    """``value`` as it reads back from a store or record (JSON), so equal configs compare equal."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def config_of(provenance: dict[str, Any]) -> dict[str, Any]:
    """A store's provenance without its inputs (weights hash, task items) and bookkeeping."""
    config = {key: value for key, value in provenance.items() if key not in ("model", "musicrep")}
    if isinstance(config.get("task"), dict):
        config["task"] = {key: value for key, value in config["task"].items() if key != "items"}
    return config


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{"a.b": leaf}`` so two configs can be diffed key by key."""
    if not isinstance(value, dict):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, inner in value.items():
        flat.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def differences(before: dict[str, Any], after: dict[str, Any], limit: int = 3) -> list[str]:
    """``"key: old -> new"`` for the first ``limit`` keys whose values differ."""
    old, new = flatten(as_stored(before)), flatten(as_stored(after))
    changed = [key for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)]
    lines = [f"{key}: {json.dumps(old.get(key))} -> {json.dumps(new.get(key))}" for key in changed[:limit]]
    if len(changed) > limit:
        lines.append(f"and {len(changed) - limit} more")
    return lines


def conflict(spec_path: Path, model_name: str, what: str, changes: list[str], stage: str) -> ConfigError:
    return ConfigError(
        f"the run directory holds {what} made with another config "
        f"({'; '.join(changes)}); running would replace them. Give the model a new name to keep both, "
        f"or pass --force {stage} to replace them", file=str(spec_path), section=f"models.{model_name}")


def check_run(context: RunContext) -> None:
    """Refuse, before any work, to replace results this run directory made with another config."""
    spec, run = context.spec, context.run
    for model in spec.models.values():
        if model.pretrain is not None and not context.forced("pretrain"):
            stored = run.pretrain_status(model.name)
            description = pretrain_description(context, model)
            if stored is not None and stored.get("key") != training_key(description):
                changes = differences(stored.get("description", {}), description)
                raise conflict(spec.path, model.name, f"the pre-training of model '{model.name}'", changes,
                               "pretrain")
        if context.forced("embed"):
            continue
        for task_name in spec.tasks:
            stored = run.stored_provenance(model.name, task_name)
            if stored is None:
                continue
            before, after = config_of(stored), as_stored(store_config(context, model, task_name))
            if before != after:
                raise conflict(spec.path, model.name, f"model '{model.name}''s embeddings of task '{task_name}'",
                               differences(before, after), "embed")
