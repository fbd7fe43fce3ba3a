"""Data-loader workers hide a broken fd hand-over (the main process stopping on purpose) and
nothing else."""
from __future__ import annotations

import sys

import pytest

from musicrep import loader_workers


def _raise(error: BaseException) -> tuple:
    try:
        raise error
    except BaseException:
        return sys.exc_info()


@pytest.mark.parametrize("error", [ConnectionResetError(104, "reset by peer"), BrokenPipeError(32, "pipe"),
                                   EOFError()])
def test_a_broken_handover_prints_nothing(error: BaseException, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # restored after the test
    loader_workers.init_worker(0)
    sys.excepthook(*_raise(error))
    assert capsys.readouterr().err == ""


def test_any_other_worker_error_still_prints_its_traceback(capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    loader_workers.init_worker(0)
    sys.excepthook(*_raise(ValueError("a real bug in a worker")))
    err = capsys.readouterr().err
    assert "Traceback" in err and "ValueError: a real bug in a worker" in err
