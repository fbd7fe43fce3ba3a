"""Progress of a long stage: a tqdm bar on a terminal, and in a log file a plain line every
10 % or 30 s (bar redraws would fill a redirected log with carriage returns)."""
from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from musicrep.text import for_terminal


def progress_bar(*, total: int, desc: str, unit: str = "it", initial: int = 0, disable: bool = False,
             file: TextIO | None = None, **bar_options: Any) -> Any:
    """A tqdm bar where ``file`` (stderr by default) is a terminal, else a ``ProgressLines``;
    both take ``update``, ``set_postfix`` and ``close``."""
    file = file or sys.stderr
    desc = for_terminal(desc)  # it may name a model or task from input: no control characters reach the terminal
    if not disable and _is_terminal(file):
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, initial=initial, file=file, **bar_options)
    return ProgressLines(total=total, desc=desc, unit=unit, initial=initial, disable=disable, file=file)


def _is_terminal(file: TextIO) -> bool:
    try:
        return file.isatty()
    except (AttributeError, ValueError):  # a closed or file-like stream without a terminal
        return False


class ProgressLines:
    """``desc: 45/192 track (23%), 12.3 s, loss=0.41``: written when another tenth of the total
    is done or ``every`` seconds have passed since the last line, and once at the end."""

    def __init__(self, *, total: int, desc: str, unit: str = "it", initial: int = 0, disable: bool = False,
                 file: TextIO | None = None, every: float = 30.0, clock: Any = time.monotonic) -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.disable, self.file, self.every, self.clock = disable, file or sys.stderr, every, clock
        self.started = self.last_time = clock()
        self.written = initial  # the count the last line showed
        self.postfix = ""

    def _tenth(self, n: int) -> int:
        return 10 * n // self.total if self.total else 0

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        """The values the next line shows (``refresh`` is tqdm's: lines here are written by ``update``)."""
        self.postfix = for_terminal(", ".join(f"{k}={v}" for k, v in values.items()))

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if self._tenth(self.n) > self._tenth(self.written) or now - self.last_time >= self.every:
            self._write(now)

    def close(self) -> None:
        """The last count, unless the last line showed it already."""
        if self.n != self.written:
            self._write(self.clock())

    def _write(self, now: float) -> None:
        self.last_time, self.written = now, self.n
        if self.disable:
            return
        share = f" ({100 * self.n // self.total}%)" if self.total else ""
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n}/{self.total} {self.unit}{share}, {now - self.started:.1f} s{extra}",
              file=self.file, flush=True)
