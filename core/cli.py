"""The ``musicrep`` command: run a pipeline, list plugins, render reports."""
from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from typing import Sequence

from musicrep._version import __version__
from musicrep import interrupts
from musicrep.errors import MusicrepError, WriteError
from musicrep.text import for_terminal

#: OS errors that are the machine's state, not a bug: one line naming the file, never a traceback
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EFBIG, errno.EDQUOT, errno.EACCES, errno.EPERM,
                         errno.EIO})


def _cmd_run(args: argparse.Namespace) -> int:
    from musicrep.pipeline.runner import run_pipeline

    if args.json and not args.dry_run:
        raise MusicrepError("--json prints the plan: use it with --dry-run")

    run_pipeline(args.pipeline, force=args.force, dry_run=args.dry_run, run_dir=args.run_dir, as_json=args.json)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from musicrep.export import export_model
    from musicrep.load import load_model

    model = load_model(args.model, weights=args.weights)
    summary = export_model(model.embedder, args.format, args.out)
    for note in summary.notes:
        print(f"note: {note}")
    shapes = ", ".join(f"{b}x{t}" for b, t in summary.checked_shapes)
    print(f"wrote {summary.path} ({summary.format}): waves [batch, samples] at {model.sample_rate} Hz -> "
          f"embeddings [batch, {model.dim}]; matches the eager model on random audio ({shapes}) "
          f"within {summary.max_relative_error:.1e} (relative L2)")
    return 0


def _cmd_embed(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from musicrep.distributed import is_main
    from musicrep.embed_catalog import embed_catalog

    summary = embed_catalog(args.model, Path(args.store), Path(args.catalog), window=args.window, hop=args.hop,
                            device=args.device, num_workers=args.num_workers,
                            checkpoint_every=args.checkpoint_every, progress=not args.quiet)
    if is_main():  # under torchrun the totals over the ranks, once
        print(json.dumps(summary), flush=True)
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
        print(for_terminal(f"musicrep: warning: report files not written: {exc.reason}: {exc.path}"), file=sys.stderr)
    return 0


def _cmd_plugins(args: argparse.Namespace) -> int:
    from musicrep.hookspecs import KINDS
    from musicrep.registry import default_registry

    registry = default_registry()
    if args.kind is not None and args.kind not in KINDS:
        raise MusicrepError(_not_a_kind(args.kind, registry))
    if args.name is not None:
        _print_options(registry.info(args.kind, args.name))
        return 0
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
    if args.kind is None:
        print("\n`musicrep plugins KIND NAME` lists a component's options.")
    problems = registry.problems
    if problems:
        print("\nplugins that failed to load:")
        for problem in problems:
            print(f"  {problem}")
    return 0


def _not_a_kind(word: str, registry) -> str:
    """The error for ``musicrep plugins WORD`` where WORD is no kind: a component's name gets the
    command that shows it."""
    from musicrep.config import closest
    from musicrep.hookspecs import KINDS

    owners = [kind for kind, components in registry.components().items() if word in components]
    if owners:
        commands = " or ".join(f"`musicrep plugins {kind} {word}`" for kind in owners)
        return f"'{word}' is a {' and a '.join(owners)}, not a kind of component; its options: {commands}"
    hint = closest(word, KINDS)
    return (f"unknown component kind '{word}'" + (f"; did you mean '{hint}'?" if hint else "")
            + f" (kinds: {', '.join(KINDS)})")


def _print_options(info) -> None:
    """A component's summary, its docstring, and one line per option of its Config: name,
    type, default (or "required") and the comment the Config gives the field."""
    import dataclasses
    import inspect
    import typing

    print(f"{info.kind} {info.name}  [{info.package}]")
    doc = inspect.getdoc(info.factory) or ""
    if doc:
        print("\n" + "\n".join(f"  {line}" for line in doc.splitlines()))
    if info.config_class is None:  # a ready model: configured by musicrep.load_model's arguments
        print("\n  options: no Config of its own; it takes what musicrep.load_model and [models.x] load take: "
              "weights, the windowing (window, hop, pooling, windowing) and the switches its docs name")
        return
    hints = typing.get_type_hints(info.config_class)
    fields = [f for f in dataclasses.fields(info.config_class) if f.init]
    print(f"\noptions ({len(fields)}):" if fields else "\noptions: none")
    comments = _field_comments(info.config_class)
    rows = [(f.name, _type_text(hints.get(f.name, typing.Any)), _default_text(f), comments.get(f.name, ""))
            for f in fields]
    widths = [max((len(r[i]) for r in rows), default=0) for i in range(3)]
    for row in rows:
        print(("  " + "  ".join(c.ljust(w) for c, w in zip(row[:3], widths)) + f"  {row[3]}").rstrip())


def _type_text(tp) -> str:
    """``list[str]``, ``int | none``, ``'mean' | 'mean+std'``: the annotation as a user reads it."""
    import types
    import typing

    from musicrep.config import describe_type

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_text(a) for a in args)
    if origin is not None and origin is not typing.Literal and args:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(_type_text(a) for a in args)}]"
    return describe_type(tp)


def _default_text(field) -> str:
    """The default as it would be written in a TOML, "required" when there is none."""
    import dataclasses
    import json

    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "required"
    if value is None:
        return "(unset)"
    try:
        return json.dumps(value)
    except TypeError:
        return repr(value)


def _field_comments(config_class: type) -> dict[str, str]:
    """The comment after each field of a Config (``n_mels: int = 128  # mel bands``): the one
    place a component documents an option, read from its source."""
    import inspect
    import io
    import re
    import textwrap
    import tokenize

    try:
        source = textwrap.dedent(inspect.getsource(config_class))
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (OSError, TypeError, tokenize.TokenError, IndentationError):  # no source (e.g. a .pyc-only install)
        return {}
    comments = {}
    for token in tokens:
        if token.type != tokenize.COMMENT or token.line.lstrip().startswith("#"):
            continue
        match = re.match(r"\s*(\w+)\s*:", token.line)
        if match:
            comments.setdefault(match.group(1), token.string.lstrip("#").strip())
    return comments


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
    run.add_argument("--json", action="store_true",
                     help="with --dry-run: the plan as JSON on stdout (stage, model, task, action, reasons)")
    run.add_argument("--run-dir", default=None, help="override [run] dir")
    run.set_defaults(handler=_cmd_run)

    embed = sub.add_parser("embed", help="embed a catalog (folder, manifest or CSV with a path column) into a "
                                         "store folder; resumable, each file once by its content")
    embed.add_argument("catalog", help="a folder of audio, a manifest (one path a line) or a CSV with a path column")
    embed.add_argument("--model", required=True, help="a ready model name, a run's model folder or a checkpoint")
    embed.add_argument("--store", required=True, help="the store folder (created; or one made by this command)")
    embed.add_argument("--window", type=float, default=None, help="window seconds (default: [embed] window's)")
    embed.add_argument("--hop", type=float, default=None, help="hop seconds (default: [embed] hop's)")
    embed.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    embed.add_argument("--num-workers", type=int, default=None, help="decode processes (default: one per core)")
    embed.add_argument("--checkpoint-every", type=int, default=128, help="clips per atomic part file")
    embed.add_argument("--quiet", action="store_true", help="no progress bar")
    embed.set_defaults(handler=_cmd_embed)

    plugins = sub.add_parser("plugins", help="list every component and the package it comes from; "
                                        "KIND NAME: that component's options")
    plugins.add_argument("kind", nargs="?", default=None, help="only this kind (e.g. encoder)")
    plugins.add_argument("name", nargs="?", default=None, help="this component's options (e.g. `task csv`)")
    plugins.set_defaults(handler=_cmd_plugins)
    export = sub.add_parser("export", help="write a model as one deployable file (ONNX, torch.export or "
                                       "TorchScript), checked against the eager model")
    export.add_argument("model", help="a ready model's name (e.g. mule), a run folder or a checkpoint")
    export.add_argument("--format", required=True, choices=("onnx", "exported-program", "torchscript"))
    export.add_argument("--out", required=True, help="the file to write")
    export.add_argument("--weights", default=None, help="weights for a named model (e.g. a MULE checkpoint)")
    export.set_defaults(handler=_cmd_export)
    report = sub.add_parser("report", help="print and write the table of a run's finished probes")
    report.add_argument("run_dir", help="a run directory made by `musicrep run`")
    report.set_defaults(handler=_cmd_report)
    check = sub.add_parser("check", help="run a component through its kind's contract, one line per rule; "
                                         "exit status 1 when a rule fails")
    check.add_argument("kind", help="frontend, encoder, augmentation, objective, task, probe or model")
    check.add_argument("name", help="the component's name (a model: as load_model takes it, e.g. hf:PATH)")
    check.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="options",
                       help="an option, VALUE in TOML syntax (e.g. --set preset='\"tiny\"'); repeatable")
    check.set_defaults(handler=_cmd_check)
    return parser


def _check_options(pairs: Sequence[str]) -> dict:
    """``KEY=VALUE`` pairs, each VALUE read as a TOML value (a bare word as a string)."""
    import tomllib

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise MusicrepError(f"--set {pair!r}: expected KEY=VALUE")
        try:
            options[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            options[key.strip()] = value
    return options


def _cmd_check(args: argparse.Namespace) -> int:
    from musicrep.conformance import check_component, passed

    verdicts = check_component(args.kind, args.name, _check_options(args.options))
    for verdict in verdicts:
        print(verdict, flush=True)
    return 0 if passed(verdicts) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    interrupts.install()
    try:
        return args.handler(args)
    except MusicrepError as exc:
        if args.debug:
            raise
        print(f"musicrep: error: {for_terminal(exc, keep_newlines=True)}", file=sys.stderr)
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
        print(for_terminal(f"musicrep: error: {exc.strerror or exc}{where}; finished work is kept"), file=sys.stderr)
        return 2
    except Exception:
        if interrupts.received() and not args.debug:  # the shutdown's own fallout (e.g. data-loader workers that got the signal too)
            return _interrupted()
        raise


def _interrupted() -> int:
    print("musicrep: interrupted; finished work is kept, run the same command to resume", file=sys.stderr)
    return 128 + (interrupts.received() or signal.SIGINT)  # 130 for Ctrl-C, 143 for SIGTERM


if __name__ == "__main__":
    sys.exit(main())
