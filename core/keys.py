"""The key grammar: reading a musical key ("eb minor", "D#:maj", "Bb") and spelling it.

Key tasks normalise their annotations with it and the key metric reads label names with it,
so both agree on what a key is.
"""
from __future__ import annotations

import re

from musicrep.errors import MusicrepError

#: Canonical spelling of the 12 tonics (as the devbench key task writes them).
TONICS: tuple[str, ...] = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
KEY_NAMES: tuple[str, ...] = tuple(f"{t} {m}" for m in ("major", "minor") for t in TONICS)
_LETTER_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_KEY_RE = re.compile(r"^\s*([A-Ga-g])\s*([#b♯♭]*)\s*(?:[:\s]\s*(major|minor|maj|min))?\s*$", re.IGNORECASE)


def read_key(text: str) -> tuple[int, str | None] | None:
    """("eb minor", "D#:maj", "Gb major", "C") -> (pitch class, "major" | "minor" | None for no
    mode given), or None when ``text`` is not a key."""
    match = _KEY_RE.match(text)
    if not match:
        return None
    letter, accidentals, mode = match.groups()
    pc = _LETTER_PC[letter.upper()] + accidentals.count("#") + accidentals.count("♯") \
        - accidentals.count("b") - accidentals.count("♭")
    return pc % 12, None if mode is None else "major" if mode.lower().startswith("maj") else "minor"


def parse_key(name: str) -> tuple[int, str]:
    """A key label -> (pitch class, 'major' | 'minor'); no mode given reads as major."""
    parsed = read_key(name)
    if parsed is None:
        raise MusicrepError(f"cannot read a key from the label {name!r} (expected e.g. 'C major', 'F# minor')")
    return parsed[0], parsed[1] or "major"


def normalize_key(text: str) -> str:
    """A key annotation ("eb minor", "D#:maj", "Gb major") in canonical spelling ("Eb minor");
    a ValueError when it is no key or names no mode."""
    parsed = read_key(text)
    if parsed is None or parsed[1] is None:
        raise ValueError(f"not a key annotation: {text!r} (expected e.g. 'Eb minor')")
    return f"{TONICS[parsed[0]]} {parsed[1]}"
