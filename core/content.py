"""Content digests of audio files: what the embedding store keys its rows by.

Placeholder: a plain SHA-256 of each file's bytes, no stat-signature cache (the content
engineer's ``musicrep.content`` replaces this module at merge, with the same interface).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

CHUNK = 1 << 20


class ContentIndex:
    """Digests of files by path; ``path`` is where a persisted index would live (unused here)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.rehashed: list[str] = []

    def digest(self, path: str | Path) -> str:
        """Hex SHA-256 of the file's bytes (OSError if unreadable)."""
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
        self.rehashed.append(str(path))
        return digest.hexdigest()

    def digests(self, paths: Iterable[str | Path], *, progress: bool = False) -> list[str]:
        return [self.digest(p) for p in paths]

    def save(self) -> None:
        """Nothing to save: the placeholder keeps no index."""


def segment_key(digest: str, start: float | None, end: float | None) -> str:
    """The key of a segment ``[start, end)`` seconds of a file with content ``digest``."""
    if start is None and end is None:
        return digest
    return hashlib.sha256(f"{digest}:{start!r}:{end!r}".encode()).hexdigest()
