"""The ``musicrep`` command: run a pipeline, list plugins, render reports."""
from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from typing import Sequence

from musicrep._version import __version__
from musicrep.errors import MusicrepError, WriteError

#: OS errors that are the machine's state, not a bug: one line naming the file, never a traceback
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EFBIG, errno.EDQUOT, errno.EACCES, errno.EPERM,
                         errno.EIO})


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM: both stop a run the same way, keeping what is finished."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_received: list[int] = []  # the signal that stopped this process, once one has


def _interrupt(signum: int, frame: object) -> None:
    """The first SIGINT or SIGTERM raises ``Interrupted``; any later one is ignored, so that the
    shutdown (writing the finished tracks' part file, releasing the lock) ends quietly. Ignored at
    the kernel (SIG_IGN), not by a Python handler: Python restores handlers it installed to the
    default late in its exit, where a signal would kill the process with no message."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _received.append(signum)
    raise Interrupted(signum)


def _install_interrupt_handlers() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not signal.SIG_IGN:  # e.g. `nohup`-like parents: keep ignoring
            signal.signal(signum, _interrupt)


def _cmd_run(args: argparse.Namespace) -> int:
    from musicrep.pipeline.runner import run_pipeline

    run_pipeline(args.pipeline, force=args.force, dry_run=args.dry_run, run_dir=args.run_dir)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from musicrep.report import render_report, write_report_files
    from musicrep.rundir import RunDir

    run = RunDir(Path(args.run_dir))
    if not run.has_probes():
        if run.is_run():  # a run that has not reached its probes (yet)
            raise MusicrepError(f"{run.root}: no probe has finished yet; nothing to report")
        raise MusicrepError(f"{run.root}: no probe results here (is it a musicrep run directory?)")
    report = render_report(run.root)
    print(report.text, flush=True)
    try:
        write_report_files(run.root, report)
    except WriteError as exc:  # a read-only or full run directory: the table above is still whole
        print(f"musicrep: warning: report files not written: {exc.reason}: {exc.path}", file=sys.stderr)
    return 0


def _cmd_plugins(args: argparse.Namespace) -> int:
    from musicrep.registry import default_registry

    registry = default_registry()
    table = registry.components(args.kind) if args.kind else registry.components()
    if args.kind:
        table = {args.kind: table}
    for kind, components in table.items():
        print(f"{kind}:")
        if not components:
            print("  (none)")
        width = max((len(n) for n in components), default=0)
        for name, info in sorted(components.items()):
            size = f"  ({_parameter_count(info)})" if kind == "encoder" else ""
            print(f"  {name:<{width}}  [{info.package}]  {info.summary}{size}")
    problems = registry.problems
    if problems:
        print("\nplugins that failed to load:")
        for problem in problems:
            print(f"  {problem}")
    return 0


def _parameter_count(info) -> str:
    """Parameters of the encoder at its default config: the size a user pays for."""
    try:
        module = info.create()
        count = sum(p.numel() for p in module.parameters())
    except MusicrepError:  # a required option (e.g. hear's module): no default size to show
        return "size set by its options"
    except Exception as exc:  # a plugin's constructor failing must not take the listing down
        return f"size unknown: {type(exc).__name__}"
    return f"{count / 1e6:.2f}M params" if count >= 1e5 else f"{count:,} params"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musicrep", description="Learn and evaluate audio representations for music understanding.")
    parser.add_argument("--version", action="version", version=f"musicrep {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run a pipeline TOML (pretrain, embed, probe, report)")
    run.add_argument("pipeline", help="path to the pipeline TOML")
    run.add_argument("--force", action="append", default=[], metavar="STAGE",
                     help="redo STAGE (pretrain, embed, probe, report) even if cached; repeatable")
    run.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    run.add_argument("--run-dir", default=None, help="override [run] dir")
    run.set_defaults(handler=_cmd_run)

    plugins = sub.add_parser("plugins", help="list every component and the package it comes from")
    plugins.add_argument("kind", nargs="?", default=None, help="only this kind (e.g. encoder)")
    plugins.set_defaults(handler=_cmd_plugins)
    report = sub.add_parser("report", help="print and write the table of a run's finished probes")
    report.add_argument("run_dir", help="a run directory made by `musicrep run`")
    report.set_defaults(handler=_cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    _install_interrupt_handlers()
    try:
        return args.handler(args)
    except MusicrepError as exc:
        if args.debug:
            raise
        print(f"musicrep: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (e.g. `musicrep plugins | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return _interrupted()
    except OSError as exc:  # a write no musicrep code expected to fail (each names its file where it can)
        if args.debug or exc.errno not in DISK_ERRNOS:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        print(f"musicrep: error: {exc.strerror or exc}{where}; finished work is kept", file=sys.stderr)
        return 2
    except Exception:
        if _received and not args.debug:  # the shutdown's own fallout (e.g. data-loader workers that got the signal too)
            return _interrupted()
        raise


def _interrupted() -> int:
    print("musicrep: interrupted; finished work is kept, run the same command to resume", file=sys.stderr)
    return 128 + (_received[0] if _received else signal.SIGINT)  # 130 for Ctrl-C, 143 for SIGTERM


if __name__ == "__main__":
    sys.exit(main())
