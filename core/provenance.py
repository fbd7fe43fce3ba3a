"""Every stage's cache key, built here from typed fields, and what differs between two keys.

A key holds what shapes a stage's numbers and nothing else:

- **config apart from inputs.** Each key class names its *inputs* (``INPUTS``: the weights'
  hash, the embedding's key, a task view's digest): content hashes that change when their
  data does. Everything else is config. ``reasons`` says "weights changed" for an input and
  ``window 20.0 -> 10.0`` for a config field, so a rerun always says why.
- **defaults left out, by rule.** A field that has a default and holds it is left out of the
  key (``fields``), and so is each component option equal to its dataclass default
  (``component_fields``): adding a field or option with a default never changes an old key.
- **no package version.** Upgrading musicrep keeps every stage cached. Instead, each component
  whose numerics can change carries an ``algorithm_version`` (a class attribute, 1 when absent
  and then left out), bumped when its output changes; a compiled op is versioned through the
  component that calls it (the mel front end for ``ops.mel_spectrogram``).

The pre-training key keeps the description earlier runs hashed (its fields verbatim), so
existing pre-trained checkpoints stay valid.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from musicrep.hashing import config_hash
from musicrep.layers import OUT

#: the algorithm version a component has when it declares none
BASE_VERSION = 1
#: reasons named one by one before "and N more"
SHOWN = 3


def algorithm_version(component: object) -> int:
    """A component's ``algorithm_version`` (``BASE_VERSION`` when it declares none)."""
    return int(getattr(component, "algorithm_version", BASE_VERSION))


def algorithm_versions(**components: object) -> dict[str, int]:
    """``{name: version}`` of the components whose version is not the base one."""
    return {name: v for name, c in components.items() if (v := algorithm_version(c)) != BASE_VERSION}


def component_fields(ref: Any) -> dict[str, Any]:
    """A component reference (``type`` + its config dataclass) with the options that hold their
    default left out."""
    config = getattr(ref, "config", None)
    out: dict[str, Any] = {"type": ref.name}
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        for f in dataclasses.fields(config):
            value = getattr(config, f.name)
            default = (f.default if f.default is not dataclasses.MISSING
                       else f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
            if default is dataclasses.MISSING or _plain(value) != _plain(default):
                out[f.name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    """``value`` as JSON reads it back, so equal settings compare equal however they were typed."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


class Key:
    """Base of the stage keys: a frozen dataclass whose ``fields`` are its key."""

    INPUTS: ClassVar[tuple[str, ...]] = ()

    def fields(self) -> dict[str, Any]:
        """The key's fields as plain data, those holding their default left out."""
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = _plain(getattr(self, f.name))
            default = (f.default if f.default is not dataclasses.MISSING
                       else f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
            if default is dataclasses.MISSING or value != _plain(default):
                out[f.name] = value
        return out

    @property
    def key(self) -> str:
        return config_hash(self.fields())

    def config(self) -> dict[str, Any]:
        return {k: v for k, v in self.fields().items() if k not in self.INPUTS}


@dataclass(frozen=True)
class EmbedKey(Key):
    """What shapes a model's embeddings: one store per value of this key."""

    INPUTS: ClassVar[tuple[str, ...]] = ("weights",)
    model: Mapping[str, Any]          # front end and encoder (component_fields), or the loaded model
    weights: str                      # hash of every parameter and buffer
    window: float
    hop: float
    pooling: str = "mean"
    windowing: str = "start"
    layers: tuple[str, ...] = (OUT,)
    dtype: str = "float32"
    algorithms: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ProbeKey(Key):
    """What shapes one probe result: the embeddings, the task's view, the probe and its scoring."""

    INPUTS: ClassVar[tuple[str, ...]] = ("embedding", "view")
    embedding: str                    # EmbedKey.key of the store
    view: str                         # the task view's digest (items, content keys, labels, splits)
    probe: Mapping[str, Any]          # component_fields of the probe
    metrics: tuple[str, ...]
    seed: int
    result_format: int
    layer: str = OUT


def loaded_model(load: str, weights: str | None) -> dict[str, Any]:
    """The model part of an embed key for a ready model (``[models.x] load``, ``musicrep embed
    --model``): a path as its resolved absolute path, so a pipeline and the command agree."""
    from pathlib import Path

    where = Path(load).expanduser()
    out: dict[str, Any] = {"load": str(where.resolve()) if where.exists() else load}
    if weights is not None:
        out["weights"] = str(Path(weights).expanduser().resolve())
    return out


def pretrain_key(description: Mapping[str, Any]) -> str:
    """The pre-training key: the hash of its description (as earlier runs made it)."""
    return config_hash(dict(description))


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{"a.b": leaf}`` so two keys can be compared field by field."""
    if not isinstance(value, dict) or not value:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for name, inner in value.items():
        flat.update(flatten(inner, f"{prefix}.{name}" if prefix else str(name)))
    return flat


def _text(value: Any) -> str:
    return "(default)" if value is None else json.dumps(value)


def reasons(before: Mapping[str, Any] | None, after: Mapping[str, Any], inputs: tuple[str, ...] = (),
            limit: int = SHOWN) -> list[str]:
    """Why a key changed, a string per field: ``"<input> changed"`` for an input (a hash),
    ``"window 20.0 -> 10.0"`` for a config field (a field left out reads "(default)")."""
    if before is None:
        return ["not made yet"]
    out = [f"{name} changed" for name in inputs if _plain(before.get(name)) != _plain(after.get(name))]
    old = flatten({k: v for k, v in _plain(dict(before)).items() if k not in inputs})
    new = flatten({k: v for k, v in _plain(dict(after)).items() if k not in inputs})
    changed = [k for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)]
    out += [f"{k} {_text(old.get(k))} -> {_text(new.get(k))}" for k in changed[:limit]]
    if len(changed) > limit:
        out.append(f"and {len(changed) - limit} more settings")
    return out
