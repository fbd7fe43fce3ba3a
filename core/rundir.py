"""The run directory: where every stage of a pipeline keeps its results, its lock, its status.

This module is the one place that knows the layout; the stages, the report, the CLI and
``musicrep.load_model`` ask it for paths rather than spelling them::

    RUN_DIR/pipeline.toml                          the pipeline the last run was started with
    RUN_DIR/.lock                                  held while a run works (holder's pid inside)
    RUN_DIR/models/<model>/final.pt                pre-trained weights, keyed, with their description
    RUN_DIR/models/<model>/last.pt                 the trainer's resumable checkpoint
    RUN_DIR/models/<model>/pretrain.json           the finished pre-training's key and description
    RUN_DIR/models/<model>/metrics.jsonl           training log (the logging plugin's)
    RUN_DIR/stores/<embed key>/                    content-addressed embedding stores, one per model
                                                   configuration (``musicrep.store``; shared by tasks)
    RUN_DIR/embeddings/<model>/<task>.h5           each task's view of its model's store
    RUN_DIR/content-index                          the audio files' content digests (``musicrep.content``)
    RUN_DIR/probes/<model>/<task>/<probe>.json     probe results, keyed (of the embedding, "out")
    RUN_DIR/probes/<model>/<task>/<layer>/<probe>.json   of an intermediate layer (``[embed] layers``)
    RUN_DIR/report.md, results.json, results.csv, plots/

Results are written atomically, so what is here is whole; the status functions say whether it
was made with the key a run expects.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import stat
import tomllib
from pathlib import Path
from typing import IO, Any, Iterator

from musicrep import atomic
from musicrep.errors import MusicrepError, WriteError
from musicrep.layers import OUT

_HELD: set[Path] = set()  # the run locks this process holds
#: run, task and model names: they become file and folder names, so letters, digits, '_', '-' and
#: '.', not starting with '.' and without '..' (no hidden files, no way up, no '/')
NAME_PATTERN = r"(?!.*\.\.)[A-Za-z0-9_-][A-Za-z0-9_.-]*"
NAME_RULE = "letters, digits, '_', '-' and '.', not starting with '.', without '..'"
#: the file that marks a folder as a musicrep run folder (written when a run starts)
MARKER = ".musicrep-run"
MARKER_TEXT = "a musicrep run folder: musicrep writes only into folders it made\n"
#: folders whose half-written files (a killed run's) are removed when a run starts
RESULT_FOLDERS = ("models", "stores", "embeddings", "probes")


class ModelDir:
    """One model's folder, ``RUN_DIR/models/<model>``: what pre-training leaves."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.final = path / "final.pt"          # pre-trained weights, keyed, with their description
        self.last = path / "last.pt"            # the trainer's resumable checkpoint
        self.record = path / "pretrain.json"    # the finished pre-training's key, description, summary
        self.training_log = path / "metrics.jsonl"


class RunDir:
    """The layout of one run directory, rooted at ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pipeline = root / "pipeline.toml"
        self.lock_file = root / ".lock"
        self.report = root / "report.md"
        self.results_json = root / "results.json"
        self.results_csv = root / "results.csv"
        self.plots = root / "plots"
        self.content_index = root / "content-index"
        self.marker = root / MARKER

    # -- paths of results ------------------------------------------------------------------
    def inside(self, path: Path) -> Path:
        """``path``, checked to lie inside the run directory once '.' and '..' are resolved
        (lexically: a symbolic link the user made inside the run, e.g. to a bigger disk, is theirs).
        Names are checked before any work; this makes sure no name can ever write elsewhere."""
        root = os.path.normpath(os.path.abspath(self.root))
        resolved = os.path.normpath(os.path.abspath(path))
        if resolved == root or os.path.commonpath([root, resolved]) != root:
            raise MusicrepError(f"{path}: outside the run directory {self.root}; refusing to write there")
        return path

    def model(self, name: str) -> ModelDir:
        return ModelDir(self.inside(self.root / "models" / name / "final.pt").parent)

    def store(self, model: str, task: str) -> Path:
        """The view of task ``task`` over model ``model``'s store (``musicrep.store.view``)."""
        return self.inside(self.root / "embeddings" / model / f"{task}.h5")

    def content_store(self, key: str) -> Path:
        """The store folder of the model configuration whose embed key is ``key``."""
        return self.inside(self.root / "stores" / key)

    def probe_result(self, model: str, task: str, probe: str, layer: str = OUT) -> Path:
        folder = self.root / "probes" / model / task
        return self.inside((folder if layer == OUT else folder / layer) / f"{probe}.json")

    # -- what is here ----------------------------------------------------------------------
    def probe_results(self) -> Iterator[tuple[str, str, str, str, Path]]:
        """``(model, task, layer, probe, path)`` of every probe result, sorted."""
        probes = self.root / "probes"
        found = [(p.parts[-3], p.parts[-2], OUT, p) for p in probes.glob("*/*/*.json")]
        found += [(p.parts[-4], p.parts[-3], p.parts[-2], p) for p in probes.glob("*/*/*/*.json")]
        for model, task, layer, path in sorted(found):
            yield model, task, layer, path.stem, path

    def stores(self) -> Iterator[tuple[str, str, Path]]:
        """``(model, task, path)`` of every task's view of a store, sorted."""
        for path in sorted((self.root / "embeddings").glob("*/*.h5")):
            yield path.parent.name, path.stem, path

    def has_probes(self) -> bool:
        return (self.root / "probes").is_dir()

    def is_run(self) -> bool:
        """Whether a ``musicrep run`` has started here (it writes ``pipeline.toml`` first)."""
        return self.pipeline.is_file()

    def training_logs(self) -> Iterator[tuple[str, Path]]:
        """``(model, metrics.jsonl)`` of every model that has a training log, sorted."""
        for path in sorted((self.root / "models").glob("*")):
            if ModelDir(path).training_log.is_file():
                yield path.name, ModelDir(path).training_log

    def pretrained_models(self) -> list[str]:
        """The models with a finished pre-training checkpoint, sorted."""
        return sorted(p.name for p in (self.root / "models").glob("*") if ModelDir(p).final.is_file())

    def saved_embed_settings(self) -> dict[str, Any]:
        """The ``[embed]`` table of the pipeline this run was started with (empty without one)."""
        if not self.is_run():
            return {}
        try:
            embed = tomllib.loads(self.pipeline.read_text()).get("embed", {})
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise MusicrepError(f"{self.pipeline}: cannot read the run's settings ({exc})") from None
        if not isinstance(embed, dict):
            raise MusicrepError(f"{self.pipeline}: [embed] is not a table")
        return embed

    # -- status of each stage's outputs ----------------------------------------------------
    def pretrain_status(self, model: str) -> dict[str, Any] | None:
        """``{"key", "description"}`` of the finished pre-training of ``model``, if any."""
        record = self.model(model).record
        if not record.exists():
            return None
        try:
            return json.loads(record.read_text())
        except ValueError:
            return None

    def probe_status(self, model: str, task: str, probe: str, key: str, layer: str = OUT) -> str:
        """"done" (a result for exactly this key), "missing", "stale" (another key) or "unreadable"."""
        try:
            result = json.loads(self.probe_result(model, task, probe, layer).read_text())
        except FileNotFoundError:
            return "missing"
        except (OSError, ValueError):  # results are written atomically; this is damage from outside
            return "unreadable"
        return "done" if isinstance(result, dict) and result.get("key") == key else "stale"

    # -- starting a run --------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Refuse a second ``musicrep run`` on a run directory that is in use.

        The lock is a POSIX record lock (``lockf``) on ``.lock``. The kernel drops it when its
        holder dies, however it dies; and unlike ``flock`` it is not shared with forked children,
        so the data-loader workers that outlive a killed run for a few seconds do not hold it. The
        file holds the holder's pid, for the message a second run prints. A record lock does not
        stop its own process, so the process also keeps a set of the run directories it holds.
        """
        with atomic.writing(self.root):
            self.root.mkdir(parents=True, exist_ok=True)
        lock = self.lock_file
        if lock.resolve() in _HELD:  # checked before opening: closing any handle would drop the lock
            raise self._in_use(str(os.getpid()))
        handle = self._open_lock()
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise self._in_use(holder) from None
        _HELD.add(lock.resolve())
        try:
            with atomic.writing(lock):
                handle.truncate(0)
                handle.write(str(os.getpid()))
                handle.flush()
            yield
        finally:
            _HELD.discard(lock.resolve())
            handle.close()  # closing releases the lock

    def _open_lock(self) -> IO[str]:
        """The lock file, opened for reading and writing without following a symbolic link: a
        planted ``.lock -> somefile`` would otherwise have the run truncate that file. Not "w":
        that would wipe the holder's pid before we know we lost."""
        lock = self.lock_file
        try:
            fd = os.open(lock, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise MusicrepError(f"{lock} is a symbolic link; a run's lock must be a plain file in the run "
                                    f"directory (remove the link)") from None
            raise WriteError(lock, exc) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise MusicrepError(f"{lock} is not a plain file; a run's lock must be one (remove it)")
        return os.fdopen(fd, "a+")

    def _in_use(self, holder: str) -> MusicrepError:
        return MusicrepError(f"{self.root} is in use by another musicrep run (pid {holder} holds "
                             f"{self.lock_file}); wait for it to finish, or give this run another [run] name "
                             f"or --run-dir")

    def start(self, pipeline_text: str) -> None:
        """Mark the folder as a run's, clear what killed runs left half-written and record the
        pipeline; under the lock. Nothing behind a symbolic link is deleted: a result folder
        that is a link is left alone, and links inside are never followed."""
        if not self.marker.is_file():
            atomic.write_text(self.marker, MARKER_TEXT)
        for folder in RESULT_FOLDERS:
            remove_leftovers(self.root / folder)
        atomic.write_text(self.pipeline, pipeline_text)

    def check_ours(self) -> None:
        """Refuse, before any work, a folder this run may not write into: one that exists, is not
        empty and was not made by musicrep (``.musicrep-run`` marks a run folder, as ``.git`` marks
        a repository). A run folder of an older musicrep (``pipeline.toml`` and ``.lock``, no
        marker) is accepted and marked when the run starts."""
        root = self.root
        if root.is_symlink() and not root.exists():
            raise MusicrepError(f"{root}: a symbolic link to nothing; refusing to use it as a run folder")
        if not root.exists():
            return
        if not root.is_dir():
            raise MusicrepError(f"{root}: not a folder; a run folder must be a new, empty or musicrep run folder")
        if self.marker.is_file() or (self.pipeline.is_file() and self.lock_file.is_file()):
            return
        if any(True for _ in root.iterdir()):
            raise MusicrepError(f"{root}: not empty and not a musicrep run folder (no {MARKER}); refusing to write "
                                f"there: choose a new or empty folder ([run] name, [run] dir or --run-dir)")


def remove_leftovers(folder: Path) -> list[Path]:
    """Delete the temporary files (``.*.tmp``) killed writes left under ``folder``, never
    following a symbolic link: a folder that is a link is skipped, links inside are not entered,
    and only plain files are removed (a link named like a temporary file is left)."""
    removed: list[Path] = []
    if folder.is_symlink() or not folder.is_dir():
        return removed
    for top, _, files in os.walk(folder, followlinks=False):
        for name in files:
            path = Path(top) / name
            if name.startswith(".") and name.endswith(".tmp") and stat.S_ISREG(os.lstat(path).st_mode):
                path.unlink()
                removed.append(path)
    return removed


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a run, task or model (it would become a path), or None."""
    if isinstance(name, str) and re.fullmatch(NAME_PATTERN, name):
        return None
    return f"{name!r} is not a valid name: names become file and folder names, so use {NAME_RULE}"


def run_of_checkpoint(checkpoint: Path) -> RunDir | None:
    """The run directory a ``models/<model>/final.pt`` belongs to; None for a loose checkpoint."""
    model_dir = checkpoint.parent
    return RunDir(model_dir.parent.parent) if model_dir.parent.name == "models" else None


def find_checkpoint(path: Path) -> Path:
    """``final.pt`` itself, a ``RUN_DIR/models/<model>`` folder, or a run with one pre-trained model."""
    if path.is_file():
        return path
    if ModelDir(path).final.is_file():
        return ModelDir(path).final
    run = RunDir(path)
    found = run.pretrained_models() if path.is_dir() else []
    if len(found) == 1:
        return run.model(found[0]).final
    if found:
        raise MusicrepError(f"{path}: the run has several pre-trained models ({', '.join(found)}); "
                            f"pass {run.model(found[0]).path} to choose one")
    raise MusicrepError(f"{path}: no pre-trained model here (looked for final.pt and models/*/final.pt)")
