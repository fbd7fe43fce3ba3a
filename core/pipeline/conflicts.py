"""A run directory binds each model name to one pre-training configuration.

Pre-training is cached by its key, so a changed config would silently retrain and, in doing so,
overwrite the checkpoint a run directory holds under that model's name: days of work. Instead
a run that would replace it stops before any work and says what changed; the user renames the
model to keep both, or forces the stage to replace it. Embeddings and probes are not refused:
a changed setting gives a new store beside the old one (nothing is lost, and switching back
finds it again), and a probe result is made again with the changed field named in the log.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from musicrep.errors import ConfigError
from musicrep.pipeline.context import RunContext
from musicrep.pipeline.pretrain import pretrain_description
from musicrep.provenance import pretrain_key


def as_stored(value: Any) -> Any:
    """``value`` as it reads back from a store or record (JSON), so equal configs compare equal."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


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


def conflict(spec_path: Path, section: str, what: str, changes: list[str], stage: str) -> ConfigError:
    return ConfigError(
        f"the run directory holds {what} made with another config "
        f"({'; '.join(changes)}); running would replace them. Give the model a new name to keep both, "
        f"or pass --force {stage} to replace them", file=str(spec_path), section=section)


def check_run(context: RunContext) -> None:
    """Refuse, before any work, to replace a pre-training this run directory made with another config."""
    spec, run = context.spec, context.run
    for model in spec.models.values():
        if model.pretrain is not None and not context.forced("pretrain"):
            stored = run.pretrain_status(model.name)
            description = pretrain_description(context, model)
            if stored is not None and stored.get("key") != pretrain_key(description):
                changes = differences(stored.get("description", {}), description)
                raise conflict(spec.path, model.section, f"the pre-training of model '{model.name}'", changes,
                               "pretrain")
