"""What the tasks hold, said before any work: items, classes and split sizes per task, and the
warnings a reader of the results would want first (a test split too small to tell models
apart, a valid split too small to choose a probe's settings on, clips shorter than the embed
window, listed audio files that do not exist).

Everything here is cheap: counts come from the task's items, durations from the items'
segments or a header read (``soundfile.info``) of at most ``DURATION_CHECKS`` files per task,
existence from one ``stat`` per file.
"""
from __future__ import annotations

import math
import os
from typing import Any

from musicrep.tasks import STANDARD_SPLITS, Item, TaskDataError

#: a test split under this many items gives intervals too wide to separate most models
SMALL_TEST = 50
#: a valid split under this many items chooses among a probe's settings by a few items' noise
#: (one item moves its accuracy by over 3 points)
SMALL_VALID = 30
#: the share of train a task without a valid split gives up to one (``musicrep.probing.split_valid``)
CARVED_VALID = 0.15
#: files per task whose header is read for their duration (evenly spaced over the items)
DURATION_CHECKS = 200
#: missing files named in a message (all are counted)
SHOWN_FILES = 10
#: what a task's label vocabulary counts, by kind
VOCABULARY = {"multiclass": "classes", "multilabel": "labels", "regression": "targets"}


def split_sizes(task: Any) -> dict[str, int]:
    """Items per split, in the task's split order."""
    return {split: len(task.items(split)) for split in task.splits}


def describe(name: str, task: Any, base: Any = None) -> str:
    """``task pitch: synth, multiclass, 432 items, 12 classes, train/valid/test 300/66/66``;
    a file the task reads is shown relative to ``base`` (the TOML's folder), as the TOML gave it."""
    sizes = split_sizes(task)
    if task.split_mode == "kfold":
        splits = f"{len(sizes)} folds of " + "/".join(str(n) for n in sizes.values())
    else:
        shown = [s for s in STANDARD_SPLITS if s in sizes]
        splits = "/".join(shown) + " " + "/".join(str(sizes[s]) for s in shown)
    return (f"task {name}: {source(task, base)}, {task.kind}, {len(task.items())} items, "
            f"{len(task.label_names)} {VOCABULARY.get(task.kind, 'labels')}, {splits}")


def source(task: Any, base: Any = None) -> str:
    """What the task reads, as the TOML gave it: ``csv data/manifest.csv`` for a manifest task
    (its ``path``, relative to ``base`` when it lies inside), else the task's own name."""
    path = getattr(getattr(task, "config", None), "path", None)
    if path is None:
        return task.name
    shown = str(path)
    if base is not None:
        relative = os.path.relpath(path, base)
        shown = shown if relative.startswith("..") else relative
    return f"{task.name.split(':')[0]} {shown}"


def small_tests(name: str, task: Any) -> list[str]:
    """A warning for each test split (each fold, for k-fold tasks) under ``SMALL_TEST`` items."""
    sizes = split_sizes(task)
    tests = sizes if task.split_mode == "kfold" else {s: n for s, n in sizes.items() if s == "test"}
    return [f"task {name}: test split {split!r} has {n} items (under {SMALL_TEST}): one item moves its accuracy "
            f"by {100 / n:.1f} points, so its intervals are wide" for split, n in tests.items() if 0 < n < SMALL_TEST]


def small_valids(name: str, task: Any) -> list[str]:
    """A warning when the split a probe chooses its settings on has under ``SMALL_VALID`` items:
    the task's valid split, or the 15 % of train carved when it has none. (A k-fold task's
    valid split is a fold: ``small_tests`` already warns of each.)"""
    if task.split_mode == "kfold":
        return []
    sizes = split_sizes(task)
    if "valid" in sizes:
        n, what = sizes["valid"], "valid split 'valid'"
    elif sizes.get("train"):
        n, what = max(1, int(round(sizes["train"] * CARVED_VALID))), "valid split (15% carved from train)"
    else:
        return []
    if not 0 < n < SMALL_VALID:
        return []
    return [f"task {name}: {what} has {n} items (under {SMALL_VALID}): the probes choose their settings on it, "
            f"and one item moves its accuracy by {100 / n:.1f} points, so the choice is close to noise"]


def clip_seconds(item: Item) -> float | None:
    """The item's length: its segment when it has one (generated tasks say so), else its file's
    header; None when neither says (no file, or one the embed stage will find bad)."""
    if item.duration is not None:
        return item.duration
    if item.path is None or not os.path.isfile(item.path):
        return None
    import soundfile

    try:
        return soundfile.info(item.path).duration - (item.start or 0.0)
    except (RuntimeError, OSError, ValueError):  # soundfile.LibsndfileError is a RuntimeError
        return None


def short_clips(name: str, task: Any, window: float) -> list[str]:
    """A warning when clips are shorter than the embed window: they are extended, not cut, and
    a representation compared on padded clips is compared on something else."""
    items = task.items()
    every = max(1, math.ceil(len(items) / DURATION_CHECKS))
    known = [(item, seconds) for item in items[::every] if (seconds := clip_seconds(item)) is not None]
    short = [(item, seconds) for item, seconds in known if seconds < window]
    if not short:
        return []
    item, seconds = min(short, key=lambda pair: pair[1])
    sample = f" (every {every}th item checked)" if every > 1 else ""
    return [f"task {name}: {len(short)} of {len(known)} clips{sample} are shorter than the {window:g} s embed "
            f"window (shortest {seconds:.2f} s, {item.path or item.id}); each is extended to one window by "
            f"reflecting its features. Lower [embed] window to compare on real audio"]


def missing_files(task: Any) -> list[str]:
    """The listed audio files that do not exist, in item order."""
    return [item.path for item in task.items() if item.path is not None and not os.path.exists(item.path)]


def named(paths: list[str]) -> str:
    more = f"; and {len(paths) - SHOWN_FILES} more" if len(paths) > SHOWN_FILES else ""
    return "; ".join(paths[:SHOWN_FILES]) + more


def unreadable_files(task: Any) -> list[str]:
    """The listed files that exist but whose header is no audio musicrep can decode (text, random
    bytes, an empty or frameless file), each as ``path (why)``: a header read per file
    (``soundfile.info``, no decoding). Tasks that decode their items their own way are not
    judged by it."""
    from musicrep.audio.decode import BadAudioError, info
    from musicrep.tasks import Task

    if type(task).audio is not Task.audio:
        return []
    bad = []
    for item in task.items():
        if item.path is None or not os.path.exists(item.path):
            continue  # missing: ``missing_files`` names it
        try:
            info(item.path)
        except BadAudioError as exc:
            bad.append(f"{item.path} ({exc.reason})")
    return bad


def check_files(tasks: dict[str, Any], on_bad_audio: str) -> None:
    """Under ``on_bad_audio = "fail"`` a missing or unreadable file would stop the run mid-way,
    after pre-training: stop it now, in one line. (Under "skip" they are skipped as bad audio;
    ``warnings`` names the missing ones.)"""
    if on_bad_audio != "fail":
        return
    for name, task in tasks.items():
        missing = missing_files(task)
        if missing:
            raise TaskDataError(f"task {name}: {len(missing)} listed audio file(s) do not exist "
                                f"(with [embed] on_bad_audio = \"fail\"): {named(missing)}")
        unreadable = unreadable_files(task)
        if unreadable:
            raise TaskDataError(f"task {name}: {len(unreadable)} listed audio file(s) are not readable audio "
                                f"(with [embed] on_bad_audio = \"fail\"): {named(unreadable)}")


def warnings(tasks: dict[str, Any], window: float, on_bad_audio: str) -> list[str]:
    """Every warning about the tasks, one line each."""
    lines = []
    for name, task in tasks.items():
        lines += small_tests(name, task) + small_valids(name, task) + short_clips(name, task, window)
        missing = missing_files(task) if on_bad_audio == "skip" else []
        if missing:
            lines.append(f"task {name}: {len(missing)} listed audio file(s) do not exist and will be skipped as "
                         f"bad audio: {named(missing)}")
    return lines
