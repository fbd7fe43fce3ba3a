"""HEAR task folders (hear-preprocess layout), scene tasks only."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from musicrep.content import ContentIndex

from musicrep.config import path_field, positive
from musicrep.tasks import (MAX_LABELS, Item, Task, TaskDataError, as_mapping, read_csv, read_json,
                            require_dir, require_file)

#: HEAR's evaluation names -> musicrep metric names
_METRICS = {"top1_acc": "accuracy", "mAP": "pr_auc", "aucroc": "roc_auc", "mirex_key": "key_weighted"}


class HearTask(Task):
    """A HEAR-format task folder: task_metadata.json, labelvocabulary.csv, {split}.json, {sr}/{split}/*.wav.

    Split modes ``trainvaltest`` (train/valid/test) and ``new_split_kfold``/``presplit_kfold``
    (folds fold00, fold01, ...). Only ``scene`` tasks (one label set per clip); HEAR ``event``
    tasks (timestamped onsets) are refused. Audio is read from the sample-rate folder closest
    to the rate asked for, so a model at 16 kHz reads the 16000/ copy without resampling.
    """

    @dataclass
    class Config:
        path: str = path_field()
        # which {sr}/ folder the items point at; default: the lowest present
        sample_rate: int | None = positive(None, what="positive Hz")
        metrics: list[str] | None = None  # override the metrics named by task_metadata.json

    def __init__(self, config: "HearTask.Config") -> None:
        super().__init__()
        self.config = config
        self.root = require_dir(config.path, "a HEAR task folder (task_metadata.json, "
                                "labelvocabulary.csv, {split}.json and {sample_rate}/{split}/ audio)")
        meta_path = require_file(self.root / "task_metadata.json", "the HEAR task metadata")
        meta = as_mapping(read_json(meta_path), meta_path, "task metadata")
        self.meta = dict(meta)
        self.task_name = str(meta.get("task_name", self.root.name))
        if meta.get("embedding_type", "scene") != "scene":
            raise TaskDataError(f"{meta_path}: embedding_type is {meta.get('embedding_type')!r}; musicrep "
                                "reads HEAR scene tasks only (event tasks need timestamp predictions)")
        kind = meta.get("prediction_type", "multiclass")
        if kind not in ("multiclass", "multilabel"):
            raise TaskDataError(f"{meta_path}: prediction_type must be multiclass or multilabel, got {kind!r}")
        self.kind = kind
        mode = meta.get("split_mode", "trainvaltest")
        if mode not in ("trainvaltest", "new_split_kfold", "presplit_kfold"):
            raise TaskDataError(f"{meta_path}: unknown split_mode {mode!r}")
        self.split_mode = "trainvaltest" if mode == "trainvaltest" else "kfold"
        self.split_names = self._split_names(meta)
        self.label_names = self._vocabulary()
        self.rates = sorted(int(p.name) for p in self.root.iterdir() if p.is_dir() and p.name.isdigit())
        if not self.rates:
            raise TaskDataError(f"{self.root}: no audio folders; expected one named by sample rate, "
                                f"e.g. {self.root / '16000'}")
        if config.sample_rate is not None and config.sample_rate not in self.rates:
            raise TaskDataError(f"{self.root}: no {config.sample_rate}/ audio folder; present: "
                                f"{', '.join(map(str, self.rates))}")
        self.sample_rate = config.sample_rate or self.rates[0]
        evaluation = meta.get("evaluation", [])
        if not isinstance(evaluation, list):
            raise TaskDataError(f"{meta_path}: evaluation must be a list of metric names, got {evaluation!r}")
        named = [_METRICS[m] for m in evaluation if isinstance(m, str) and m in _METRICS]
        if config.metrics or named:  # else the kind's defaults
            self.metrics = config.metrics or named

    @property
    def name(self) -> str:
        return f"hear:{self.task_name}"

    @property
    def source(self) -> str:
        return str(self.root)

    def _split_names(self, meta: dict) -> list[str]:
        if self.split_mode == "trainvaltest":
            names = ["train", "valid", "test"]
        else:
            names = sorted(p.stem for p in self.root.glob("fold*.json"))
            nfolds = meta.get("nfolds")
            if nfolds is not None and (isinstance(nfolds, bool) or not isinstance(nfolds, int)):
                raise TaskDataError(f"{self.root / 'task_metadata.json'}: nfolds must be a whole number, got "
                                    f"{nfolds!r}")
            if nfolds is not None and len(names) != nfolds:
                expected = ", ".join(f"fold{i:02d}.json" for i in range(min(nfolds, 100))) + (
                    ", ..." if nfolds > 100 else "")
                raise TaskDataError(f"{self.root}: task_metadata.json says nfolds={nfolds} but "
                                    f"{len(names)} fold files are present; expected {expected}")
            if not names:
                raise TaskDataError(f"{self.root}: k-fold task without fold files (fold00.json, ...)")
        for name in names:
            require_file(self.root / f"{name}.json", f"the labels of split '{name}' "
                         "({filename: [label, ...]})")
        return names

    def _vocabulary(self) -> list[str]:
        path = require_file(self.root / "labelvocabulary.csv", "the label vocabulary (columns idx,label)")
        columns, rows = read_csv(path, max_rows=MAX_LABELS)  # bounded before a row more is held
        if not rows or "idx" not in columns or "label" not in columns:
            raise TaskDataError(f"{path}: expected a CSV with columns idx,label")
        indexed = []
        for line, row in rows:
            try:
                indexed.append((int(row["idx"]), str(row["label"])))
            except ValueError:
                raise TaskDataError(f"{path}, line {line}: idx {row['idx']!r} is not a whole number") from None
        labels = [label for _, label in sorted(indexed)]
        if len(set(labels)) != len(labels):
            raise TaskDataError(f"{path}: a label appears twice")
        return labels

    def load_items(self) -> list[Item]:
        items = []
        for split in self.split_names:
            path = self.root / f"{split}.json"
            labels = as_mapping(read_json(path), path, "split labels")
            folder = self.root / str(self.sample_rate) / split
            for filename, values in labels.items():
                if not isinstance(values, list):
                    raise TaskDataError(f"{path}: labels of {filename!r} must be a list, got {values!r}")
                if filename in ("", ".", "..") or any(c in filename for c in "/\\") or any(ord(c) < 32 for c in filename):
                    raise TaskDataError(f"{path}: {filename!r} is not a file name in {folder}")
                items.append(Item(id=f"{split}/{filename}", path=str(folder / filename),
                                  labels=[str(v) for v in values], split=split))
        return items

    def copies(self, item: Item) -> list[Path]:
        """The files ``audio`` may read for ``item``: its copy at each rate the folder holds."""
        path = Path(item.path)
        found = [self.root / str(rate) / path.parent.name / path.name for rate in self.rates]
        return [copy for copy in found if copy == path or copy.is_file()]

    def content_key(self, item: Item, index: "ContentIndex") -> str:
        """The digest of the clip's bytes, as for any file, when the folder holds one rate; with
        several, a hash of every copy's digest, so a change to any copy that a model may read is a
        new key. Two task folders holding the same files share their keys (and their embeddings)."""
        copies = self.copies(item)
        if len(copies) == 1:
            return index.digest(copies[0])
        joined = ",".join(f"{copy.parent.parent.name}:{index.digest(copy)}" for copy in copies)
        return "rates-" + hashlib.sha256(joined.encode()).hexdigest()

    def audio(self, item: Item, sample_rate: int) -> np.ndarray:
        """Read the copy at the rate asked for when the folder has it (no resampling)."""
        if sample_rate in self.rates and sample_rate != self.sample_rate:
            path = Path(item.path)
            candidate = self.root / str(sample_rate) / path.parent.name / path.name
            if candidate.is_file():
                item = Item(item.id, str(candidate), item.labels, item.split, item.start, item.end)
        return super().audio(item, sample_rate)
