"""What a task must hold for its probes to run, checked before any embedding: a failure here
would otherwise surface only after every track was embedded."""
from __future__ import annotations

from typing import Any

from musicrep.errors import ConfigError
from musicrep.tasks import STANDARD_SPLITS


def training_arrangements(task: Any) -> list[tuple[str, list[str]]]:
    """(what it is called, the splits a probe trains on) for each fit the probe stage makes:
    one for a train/valid/test task, one per fold for a k-fold task (as ``probe_store`` does)."""
    splits = task.splits
    if task.split_mode == "kfold":
        return [(f"the folds other than {splits[i]!r} and {splits[(i + 1) % len(splits)]!r}",
                 [s for s in splits if s not in (splits[i], splits[(i + 1) % len(splits)])])
                for i in range(len(splits))]
    return [("the train split", ["train"])]


def check_task(name: str, task: Any, file: str) -> None:
    """Raise a ``ConfigError`` for a task its probes cannot use: items in splits no probe reads
    (e.g. 'validation' for 'valid'), no train or no test split (or fewer than 3 folds), or a
    multiclass task whose training items hold fewer than two classes."""
    section = f"tasks.{name}"
    splits = task.splits
    if task.split_mode == "kfold":
        if "train" in splits or len(splits) < 3:
            raise ConfigError(f"a k-fold task needs at least 3 folds and no split named 'train'; its splits: "
                              f"{', '.join(splits)}", file=file, section=section)
    else:
        unknown = [s for s in splits if s not in STANDARD_SPLITS]
        if unknown:
            counts = ", ".join(f"{s!r} ({len(task.items(s))} items)" for s in unknown)
            raise ConfigError(f"split names {counts} are not {', '.join(STANDARD_SPLITS)}: their items would "
                              f"go unused", file=file, section=section)
        for needed in ("train", "test"):
            if needed not in splits:
                raise ConfigError(f"no '{needed}' split (its splits: {', '.join(splits)}); a probe trains on "
                                  f"train and scores on test", file=file, section=section)
    if task.kind != "multiclass":
        return
    for what, training in training_arrangements(task):
        classes = {label for split in training for item in task.items(split) for label in item.labels}
        if len(classes) < 2:
            found = f"only class {next(iter(classes))!r}" if classes else "no class"
            raise ConfigError(f"{what} holds {found}; a classifier needs at least two",
                              file=file, section=section)
