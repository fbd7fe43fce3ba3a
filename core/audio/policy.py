"""What to do with a file that gives no clean audio: ``on_bad_audio = "skip" | "fail"``.

Real catalogs hold a few broken files (MagnaTagATune ships three empty mp3s). "fail" stops
at the first one; "skip" carries on but logs each file by name and keeps them, so the stage
summary can say how many were left out and which. Nothing is ever dropped silently.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Literal, TypeVar

import numpy as np

from musicrep.audio.decode import BadAudioError, load

log = logging.getLogger("musicrep.audio")
T = TypeVar("T")
MODES = ("skip", "fail")


class BadAudioPolicy:
    """Applies ``on_bad_audio`` to ``BadAudioError``s and counts the files skipped.

    Data-loader workers should send a ``BadAudioError`` back (it pickles intact) and let the
    main process call ``handle``, so that one policy sees every skip.
    """

    def __init__(self, mode: Literal["skip", "fail"] = "skip",
                 logger: logging.Logger | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"on_bad_audio must be 'skip' or 'fail', got {mode!r}")
        self.mode = mode
        self.skipped: list[BadAudioError] = []
        self._log = logger or log

    @property
    def count(self) -> int:
        """How many files were skipped so far."""
        return len(self.skipped)

    def handle(self, error: BadAudioError) -> None:
        """Raise ``error`` under "fail"; record and log it under "skip"."""
        if self.mode == "fail":
            raise error
        self.skipped.append(error)
        self._log.warning("skipping bad audio file %s: %s", error.path, error.reason)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """``fn(*args, **kwargs)``, or None when it raised ``BadAudioError`` and we skip."""
        try:
            return fn(*args, **kwargs)
        except BadAudioError as error:
            self.handle(error)
            return None

    def load(self, path: str | Path, sample_rate: int, **kwargs: Any) -> np.ndarray | None:
        """``musicrep.audio.load`` under this policy: None for a skipped file."""
        return self.call(load, path, sample_rate, **kwargs)

    def summary(self, limit: int = 10) -> str:
        """One line for a stage summary: how many files were skipped, and the first few."""
        if not self.skipped:
            return "bad audio files: none"
        shown = "; ".join(f"{e.path} ({e.reason})" for e in self.skipped[:limit])
        more = f"; and {self.count - limit} more" if self.count > limit else ""
        return f"bad audio files skipped: {self.count}: {shown}{more}"
