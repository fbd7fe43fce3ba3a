"""The ``musicrep`` command line called in this process, its output captured: the one way tests
that check an exit code and a message run it (a child process is ``killing.command``)."""
from __future__ import annotations

import contextlib
import io

from musicrep.cli import main


def cli_outputs(*args: object) -> tuple[int, str, str]:
    """``musicrep ARGS`` in-process: (exit code, stdout, stderr). Each arg is passed as ``str``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def cli(*args: object) -> tuple[int, str]:
    """``musicrep ARGS`` in-process: (exit code, stderr), stdout dropped."""
    code, _, err = cli_outputs(*args)
    return code, err
