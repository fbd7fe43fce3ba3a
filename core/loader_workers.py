"""Data-loader workers that stay quiet when the main process stops on purpose.

A tensor leaves a worker through a file descriptor that the worker's ``multiprocessing``
resource-sharer thread hands over on request. When the main process is interrupted (Ctrl-C,
SIGTERM) in the middle of such a hand-over, the connection breaks and that thread prints a
traceback to the shared terminal, after musicrep's one-line "interrupted" message, as if
something had failed. Nothing has: the track in flight was never written and is decoded again
on resume. Every other worker error still reaches the main process (PyTorch re-raises it there).
"""
from __future__ import annotations

import sys
from types import TracebackType

_HANDOVER_ERRORS = (EOFError, ConnectionError)  # the reader went away mid hand-over


def _quiet_handover_errors(kind: type[BaseException], value: BaseException,
                           traceback: TracebackType | None) -> None:
    if not issubclass(kind, _HANDOVER_ERRORS):
        sys.__excepthook__(kind, value, traceback)


def init_worker(worker_id: int) -> None:
    """``worker_init_fn`` for every musicrep data loader."""
    sys.excepthook = _quiet_handover_errors
