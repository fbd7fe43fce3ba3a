"""The one validator kit: value checks for op arguments and the constraints config fields declare.

An op argument is checked where it is taken, by a function that raises ``ValueError`` naming it
(``positive_int``, ``finite_number``, ``choice``). A config field declares its constraint
instead (``musicrep.config.positive()`` and friends put one of the classes below in the
field's metadata): ``build_config`` checks it and names the key, and since the range is data, a
test can turn it into out-of-range values (``invalid_values``) for every registered component,
as scikit-learn's ``generate_invalid_param_val`` does.

A bound may name another field of the same config (``interval(high="max_db")``): the
cross-field orderings are declared the same way as the plain ranges.
"""
from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Protocol


# -- op arguments ------------------------------------------------------------------------------

def positive_int(name: str, value: object, unit: str = "") -> int:
    """``value`` as an int > 0 (a NumPy integer counts; a bool does not)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name} must be a positive integer{unit}, got {value!r}")
    return int(value)


def finite_number(name: str, value: object) -> float:
    """``value`` as a Python float; NumPy integers and floats count, bools do not."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def choice(name: str, value: object, options: tuple) -> object:
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}")
    return value


# -- declared constraints of config fields -----------------------------------------------------

#: A number, the name of another field of the config, a function of the config's values (a
#: bound computed from several fields), or none.
Bound = float | str | Callable[[Mapping[str, Any]], float] | None


class Constraint(Protocol):
    def problem(self, value: Any, fields: Mapping[str, Any]) -> str | None:
        """What is wrong with ``value`` ("must be positive, got -1"), or None when it is fine;
        ``fields`` holds the config's other values, for bounds that name one."""

    def invalid_values(self, value: Any, fields: Mapping[str, Any], integer: bool) -> list[Any]:
        """Values this constraint refuses (of int type when ``integer``), for tests; ``value``
        is a valid one (the default), for a change that breaks one part of it."""


def _resolve(bound: Bound, fields: Mapping[str, Any]) -> tuple[float | None, str]:
    """The bound's value and how a message shows it (``max_db (6.0)`` for a named field)."""
    if callable(bound):
        value = bound(fields)
        return value, f"{value:g}"
    if isinstance(bound, str):
        value = fields.get(bound)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, bound  # not given (a required field) or none: no bound
        return value, f"{bound} ({value})"
    return bound, "" if bound is None else f"{bound:g}"


@dataclass(frozen=True)
class Interval:
    """A finite number between two bounds (either may be open, missing or another field's name)."""

    low: Bound = None
    high: Bound = None
    low_open: bool = False
    high_open: bool = False
    what: str = ""  # how the requirement reads, when not the plain bounds ("a probability in [0, 1]")

    def describe(self, fields: Mapping[str, Any]) -> str:
        if self.what:
            return self.what
        (low, low_text), (high, high_text) = _resolve(self.low, fields), _resolve(self.high, fields)
        if low is None and high is None:
            return "finite"
        if high is None:
            if low == 0 and self.low_open and not isinstance(self.low, str):
                return "positive"
            return f"{'>' if self.low_open else '>='} {low_text}"
        if low is None:
            return f"{'<' if self.high_open else '<='} {high_text}"
        return f"in {'(' if self.low_open else '['}{low_text}, {high_text}{')' if self.high_open else ']'}"

    def problem(self, value: Any, fields: Mapping[str, Any]) -> str | None:
        low, high = _resolve(self.low, fields)[0], _resolve(self.high, fields)[0]
        fine = (math.isfinite(value)
                and (low is None or (value > low if self.low_open else value >= low))
                and (high is None or (value < high if self.high_open else value <= high)))
        return None if fine else f"must be {self.describe(fields)}, got {value!r}"

    def invalid_values(self, value: Any, fields: Mapping[str, Any], integer: bool) -> list[Any]:
        low, high = _resolve(self.low, fields)[0], _resolve(self.high, fields)[0]
        out: list[Any] = []
        if integer:
            if low is not None:
                edge = math.floor(low) if self.low_open or low != math.floor(low) else int(low) - 1
                out += [int(edge), int(edge) - 2**40]
            if high is not None:
                edge = math.ceil(high) if self.high_open or high != math.ceil(high) else int(high) + 1
                out += [int(edge), int(edge) + 2**40]
            return out
        if low is not None:
            out += [float(low) if self.low_open else math.nextafter(low, -math.inf), low - 1e6]
        if high is not None:
            out += [float(high) if self.high_open else math.nextafter(high, math.inf), high + 1e6]
        return out + [math.nan, math.inf if high is None and low is not None else -math.inf]


@dataclass(frozen=True)
class Items:
    """A list of at least ``min_len`` values (exactly ``length``, or as many as the list field
    it names), each meeting ``item``; a tuple of constraints is one per position."""

    item: Constraint | tuple[Constraint, ...] | None = None
    min_len: int = 1
    length: int | str | None = None
    what: str = ""  # what one item is, for the message when there are too few

    def _want(self, fields: Mapping[str, Any]) -> int | None:
        if isinstance(self.item, tuple):
            return len(self.item)
        if not isinstance(self.length, str):
            return self.length
        other = fields.get(self.length)
        return len(other) if isinstance(other, (list, tuple)) else None

    def _item(self, i: int) -> Constraint | None:
        return self.item[i] if isinstance(self.item, tuple) else self.item

    def problem(self, value: Any, fields: Mapping[str, Any]) -> str | None:
        want = self._want(fields)
        if want is not None and len(value) != want:
            named = f" (one per item of {self.length})" if isinstance(self.length, str) else ""
            return f"needs {want} values{named}, got {list(value)}"
        if len(value) < self.min_len:
            what = self.what or f"value{'s' * (self.min_len != 1)}"
            return f"needs at least {self.min_len} {what}, got {list(value)}"
        for i, item in enumerate(value):
            constraint = self._item(i)
            wrong = constraint.problem(item, fields) if constraint is not None else None
            if wrong:
                return f"item {i} {wrong}"
        return None

    def invalid_values(self, value: Any, fields: Mapping[str, Any], integer: bool) -> list[Any]:
        value = list(value or ())
        out: list[Any] = [[]] if self.min_len > 0 or self._want(fields) else []
        if self._want(fields) is not None and value:
            out.append(value + value[:1])
        positions = range(len(self.item)) if isinstance(self.item, tuple) else range(min(len(value), 1))
        for i in positions:  # one bad item among good ones
            constraint = self._item(i)
            if constraint is not None:
                bads = constraint.invalid_values(value[i], fields, integer)
                out += [value[:i] + [bad] + value[i + 1:] for bad in bads]
        if not value and self.item is not None and not isinstance(self.item, tuple):
            out += [[bad] for bad in self.item.invalid_values(None, fields, integer)]
        return out


@dataclass(frozen=True)
class Matches:
    """A string matching ``pattern`` in full; ``what`` says in words what it must be."""

    pattern: str
    what: str
    examples: Sequence[str] = ("", " ", "?", "no such thing!")

    def problem(self, value: Any, fields: Mapping[str, Any]) -> str | None:
        return None if re.fullmatch(self.pattern, value) else f"must be {self.what}, got {value!r}"

    def invalid_values(self, value: Any, fields: Mapping[str, Any], integer: bool) -> list[Any]:
        return [s for s in self.examples if not re.fullmatch(self.pattern, s)]
