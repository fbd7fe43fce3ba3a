"""The ``musicrep`` command: run a pipeline, list plugins, render reports."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from musicrep._version import __version__
from musicrep.errors import MusicrepError


def _cmd_run(args: argparse.Namespace) -> int:
    from musicrep.pipeline.runner import run_pipeline

    run_pipeline(args.pipeline, force=args.force, dry_run=args.dry_run, run_dir=args.run_dir)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from musicrep.report import write_report
    from musicrep.rundir import RunDir

    run = RunDir(Path(args.run_dir))
    if not run.has_probes():
        if run.is_run():  # a run that has not reached its probes (yet)
            raise MusicrepError(f"{run.root}: no probe has finished yet; nothing to report")
        raise MusicrepError(f"{run.root}: no probe results here (is it a musicrep run directory?)")
    print(write_report(run.root))
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
        print("musicrep: interrupted; finished work is kept, run the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
