"""Ctrl-C and SIGTERM: both stop a run the same way, keeping what is finished.

The first signal raises ``Interrupted`` wherever the main thread is. Some code a run passes
through may catch and drop that exception (a library's cleanup, a callback); the signal is
then still recorded, and the long loops (each track embedded, each training step, each probe)
call ``stop_if_interrupted`` so that the run stops at the next one anyway, instead of running
on to the end with every later signal ignored.
"""
from __future__ import annotations

import signal


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_received: list[int] = []  # the signal that stopped this process, once one has


def received() -> int | None:
    """The signal that stopped this process, or None."""
    return _received[0] if _received else None


def _interrupt(signum: int, frame: object) -> None:
    """The first SIGINT or SIGTERM raises ``Interrupted``; any later one is ignored, so that the
    shutdown (writing the finished tracks' part file, releasing the lock) ends quietly. Ignored at
    the kernel (SIG_IGN), not by a Python handler: Python restores handlers it installed to the
    default late in its exit, where a signal would kill the process with no message."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _received.append(signum)
    raise Interrupted(signum)


def install() -> None:
    """Stop on the first SIGINT or SIGTERM (``musicrep`` commands call this first)."""
    _received.clear()
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not signal.SIG_IGN:  # e.g. `nohup`-like parents: keep ignoring
            signal.signal(signum, _interrupt)


def stop_if_interrupted() -> None:
    """Raise ``Interrupted`` again if a signal arrived whose exception was swallowed on its way."""
    if _received:
        raise Interrupted(_received[0])
