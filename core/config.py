"""Typed configuration: mappings (from TOML or keyword arguments) checked against dataclasses.

Every component declares its options as a dataclass; ``build_config`` turns a mapping into an
instance of it or raises a ``ConfigError`` naming the key (and the closest valid key for a
misspelling). Ranges are declared on the fields (``positive()``, ``interval(lo, hi)``,
``probability()``, ``items(...)``, ``matches(...)``; a bound may name another field) and checked
here, so tests can generate out-of-range values from them. What no declaration can say (a bound
computed from several fields) stays in the dataclass's ``__post_init__``, which raises
``invalid(key, why)`` so the error still names the key.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from collections import abc
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from musicrep.checks import Constraint, Interval, Items, Matches
from musicrep.errors import ConfigError

T = TypeVar("T")


class InvalidValue(ValueError):
    """Raised from a config dataclass's ``__post_init__``; ``build_config`` adds the location."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key, self.message = key, message


def invalid(key: str, message: str) -> InvalidValue:
    """``raise invalid("n_fft", "must be a power of two")`` inside ``__post_init__``."""
    return InvalidValue(key, message)


def closest(name: str, options: typing.Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return matches[0] if matches else None


def unknown_key_message(key: str, valid: typing.Iterable[str]) -> str:
    valid = sorted(valid)
    hint = closest(key, valid)
    if hint:
        return f"unknown key; did you mean '{hint}'?"
    return "unknown key; valid keys: " + (", ".join(valid) if valid else "(none)")


def describe_type(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(describe_type(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "none"
    if dataclasses.is_dataclass(tp):
        return "table"
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (int widened to float)."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        if value in args and type(value) in {type(a) for a in args}:
            return value
        raise InvalidValue(key, f"must be one of {', '.join(repr(a) for a in args)}, got {value!r}")
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arm in args:
            if arm is type(None):
                continue
            try:
                return _coerce(value, arm, key)
            except InvalidValue:
                continue
        raise InvalidValue(key, f"expected {describe_type(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise InvalidValue(key, f"expected a table, got {value!r}")
        return build_config(tp, value, section=key)
    if origin in (list, tuple, abc.Sequence):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise InvalidValue(key, f"expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise InvalidValue(key, f"expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise InvalidValue(key, f"expected a table, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidValue(key, f"expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidValue(key, f"expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise InvalidValue(key, f"expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise InvalidValue(key, f"expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise InvalidValue(key, f"expected {describe_type(tp)}, got {value!r}")
    return value


def path_field(default: Any = dataclasses.MISSING) -> Any:
    """A config field naming a file or folder: a relative path in a pipeline TOML is taken
    relative to that TOML file, not to wherever ``musicrep run`` was started."""
    return dataclasses.field(default=default, metadata={"path": True})


def constrained(constraint: Constraint, default: Any = dataclasses.MISSING) -> Any:
    """A config field whose value must meet ``constraint`` (None, where allowed, always does).

    A list or dict default is copied for each instance, as ``default_factory`` would.
    """
    metadata = {"constraint": constraint}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.copy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def interval(low: float | str | None = None, high: float | str | None = None, default: Any = dataclasses.MISSING,
             *, low_open: bool = False, high_open: bool = False, what: str = "") -> Any:
    """A finite number in ``[low, high]`` (``low_open``/``high_open`` exclude the ends); a bound
    given as a string is the value of that other field."""
    return constrained(Interval(low, high, low_open, high_open, what), default)


def positive(default: Any = dataclasses.MISSING, *, what: str = "") -> Any:
    """A finite number > 0."""
    return interval(0, None, default, low_open=True, what=what)


def non_negative(default: Any = dataclasses.MISSING) -> Any:
    """A finite number >= 0."""
    return interval(0, None, default)


def probability(default: Any = dataclasses.MISSING) -> Any:
    return interval(0, 1, default, what="a probability in [0, 1]")


def finite(default: Any = dataclasses.MISSING) -> Any:
    return interval(None, None, default)


def items(item: Any = None, default: Any = dataclasses.MISSING, *, min_len: int = 1,
          length: int | str | None = None, what: str = "") -> Any:
    """A list of at least ``min_len`` values (exactly ``length``, or as many as the list field
    ``length`` names), each meeting the constraint of the field ``item`` (e.g. ``positive()``);
    a tuple of such fields constrains the list's positions one by one."""
    if isinstance(item, tuple):
        inner: Any = tuple(f.metadata["constraint"] for f in item)
    else:
        inner = item.metadata["constraint"] if item is not None else None
    return constrained(Items(inner, min_len, length, what), default)


def matches(pattern: str, what: str, default: Any = dataclasses.MISSING) -> Any:
    """A string matching the regular expression ``pattern`` in full; ``what`` says it in words."""
    return constrained(Matches(pattern, what), default)


def config_fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def field_constraint(cls: type, name: str) -> Constraint | None:
    """The constraint declared on field ``name`` of ``cls``, or of the nearest dataclass base
    declaring one: a subclass that only changes a default keeps the field's range."""
    for klass in cls.__mro__:
        f = getattr(klass, "__dataclass_fields__", {}).get(name)
        if f is not None and "constraint" in f.metadata:
            return f.metadata["constraint"]
    return None


def check_constraints(cls: type, given: Mapping[str, Any]) -> None:
    """Raise ``InvalidValue`` for the first value that breaks its field's declared constraint:
    the keys the user gave first (a broken ordering blames the key that was written)."""
    fields = config_fields(cls)
    values = {name: field_default(f) for name, f in fields.items()} | dict(given)
    for name in sorted(fields, key=lambda n: n not in given):
        constraint, value = field_constraint(cls, name), values[name]
        if constraint is not None and value is not None and value is not dataclasses.MISSING:
            wrong = constraint.problem(value, values)
            if wrong:
                raise InvalidValue(name, wrong)


def build_config(cls: type[T], values: Mapping[str, Any] | None = None, *, section: str | None = None,
                 file: str | None = None, base_dir: Path | None = None) -> T:
    """An instance of the dataclass ``cls`` from ``values``, every key and type checked.

    Relative values of ``path_field`` fields are resolved against ``base_dir`` when given.
    """
    values = dict(values or {})
    fields = config_fields(cls)
    if base_dir is not None:
        for name, f in fields.items():
            value = values.get(name)
            if f.metadata.get("path") and isinstance(value, str) and value and not Path(value).is_absolute():
                values[name] = str(Path(base_dir) / value)
    hints = typing.get_type_hints(cls)
    for key in values:
        if key not in fields:
            raise ConfigError(unknown_key_message(key, fields), file=file, section=section, key=key)
    try:
        kwargs = {name: _coerce(values[name], hints[name], name) for name in fields if name in values}
        check_constraints(cls, kwargs)
        for name, field in fields.items():
            if name not in kwargs and field_default(field) is dataclasses.MISSING:
                raise InvalidValue(name, f"required key is missing ({describe_type(hints[name])})")
        return cls(**kwargs)
    except InvalidValue as exc:
        raise ConfigError(exc.message, file=file, section=section, key=exc.key) from None
    except ConfigError as exc:
        raise exc.located(file=file, section=section) from None

