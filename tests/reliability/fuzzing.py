"""Shared by the fuzz tests (``test_fuzz_*.py``): the one rule every reader of outside data keeps,
mutations of valid files, and the example budget.

The rule (``returns_or_one_line``): reading hostile input returns, or raises musicrep's own
error (``MusicrepError``) whose message is ONE line naming the file; nothing else escapes. Other
engineers' fuzz tests (the store, the report's readers) import these helpers.

The budget: ``FUZZ`` holds each test to ``MUSICREP_FUZZ_EXAMPLES`` examples (a CI-sized default;
the whole fuzz suite runs in well under two minutes) with no deadline. The soak
(``tests/reliability/fuzz_soak.py --minutes 20``) runs the same tests with a large budget and a
fresh seed per round.
"""
from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import Any, Callable

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from musicrep.errors import MusicrepError

#: examples per fuzz test; the soak raises it
EXAMPLES = int(os.environ.get("MUSICREP_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=False, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


def scaled(n: int) -> settings:
    """``FUZZ`` with ``n`` times fewer examples (for the slower readers), at least 5."""
    return settings(FUZZ, max_examples=max(5, EXAMPLES // n))


class Escaped(AssertionError):
    """A reader let through something other than musicrep's one-line error."""


def check_one_line(error: BaseException, names: tuple[str | Path, ...]) -> None:
    """``error`` is a ``MusicrepError`` whose message is one line naming one of ``names``."""
    if not isinstance(error, MusicrepError):
        raise Escaped("".join(traceback.format_exception(error))) from None
    message = str(error)
    if len(message.splitlines()) > 1:
        raise Escaped(f"a message of several lines: {message!r}")
    if names and not any(str(name) in message for name in names):
        raise Escaped(f"the message names none of {[str(n) for n in names]}: {message!r}")


def returns_or_one_line(read: Callable[[], Any], *names: str | Path) -> Any:
    """``read()``'s value, or None when it raised musicrep's one-line error naming one of
    ``names``; anything else (another exception, several lines, no name) fails the test with the
    full traceback."""
    try:
        return read()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # the point: whatever escapes is caught and judged here
        check_one_line(error, names)
        return None


# -- mutations of valid bytes ---------------------------------------------------------------------

@st.composite
def mutated(draw: st.DrawFn, original: bytes, max_edits: int = 8) -> bytes:
    """``original`` with a few random edits: bit flips, overwritten, inserted or deleted runs,
    a duplicated slice, or a truncation (what a bad disk, a partial copy or a hostile editor does)."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, max_edits))):
        if not data:
            data += draw(st.binary(min_size=1, max_size=16))
            continue
        at = draw(st.integers(0, len(data) - 1))
        edit = draw(st.sampled_from(["flip", "overwrite", "insert", "delete", "duplicate", "truncate",
                                     "interesting"]))
        if edit == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif edit == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[at:at + len(chunk)] = chunk
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif edit == "delete":
            del data[at:at + draw(st.integers(1, 64))]
        elif edit == "duplicate":
            end = min(len(data), at + draw(st.integers(1, 256)))
            data[end:end] = data[at:end]
        elif edit == "truncate":
            del data[at:]
        else:  # numbers a parser trusts: 0, -1, huge
            value = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]))
            width = draw(st.sampled_from([1, 2, 4]))
            data[at:at + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
    return bytes(data)


def bytes_or_mutation(original: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, or ``original`` mutated (most examples)."""
    return st.one_of(st.binary(max_size=4096), mutated(original), mutated(original), mutated(original))


#: JSON-like values of any shape (what a hostile task or weights folder may hold)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30)


def nested(depth: int, open_: str = "[", close: str = "]") -> str:
    """Text of ``depth`` nested JSON arrays (or objects, with ``'{"a":'`` and ``'}'``)."""
    return open_ * depth + close * depth


#: JSON nested deeper than Python's parser recurses (arrays or objects), as bytes
deeply_nested_json = st.builds(lambda depth, kind: nested(depth, *kind).encode(),
                               st.sampled_from([900, 2000, 10_000, 100_000]) | st.integers(500, 200_000),
                               st.sampled_from([("[", "]"), ('{"a":', "}")]))
