"""HEAR task folders (hear-preprocess layout), scene tasks only."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musicrep.config import path_field, positive
from musicrep.tasks import (Item, Task, TaskDataError, as_mapping, require_dir,
                            require_file)

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
        try:
            meta = as_mapping(json.loads(meta_path.read_text(encoding="utf-8")), meta_path, "task metadata")
        except json.JSONDecodeError as exc:
            raise TaskDataError(f"{meta_path}: not valid JSON ({exc})") from None
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
        named = [_METRICS[m] for m in meta.get("evaluation", []) if m in _METRICS]
        if config.metrics or named:  # else the kind's defaults
            self.metrics = config.metrics or named

    @property
    def name(self) -> str:
        return f"hear:{self.task_name}"

    def _split_names(self, meta: dict) -> list[str]:
        if self.split_mode == "trainvaltest":
            names = ["train", "valid", "test"]
        else:
            names = sorted(p.stem for p in self.root.glob("fold*.json"))
            nfolds = meta.get("nfolds")
            if nfolds is not None and len(names) != int(nfolds):
                expected = ", ".join(f"fold{i:02d}.json" for i in range(int(nfolds)))
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
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        if not rows or "idx" not in rows[0] or "label" not in rows[0]:
            raise TaskDataError(f"{path}: expected a CSV with columns idx,label")
        return [str(r["label"]) for r in sorted(rows, key=lambda r: int(r["idx"]))]

    def load_items(self) -> list[Item]:
        items = []
        for split in self.split_names:
            path = self.root / f"{split}.json"
            try:
                labels = as_mapping(json.loads(path.read_text(encoding="utf-8")), path, "split labels")
            except json.JSONDecodeError as exc:
                raise TaskDataError(f"{path}: not valid JSON ({exc})") from None
            folder = self.root / str(self.sample_rate) / split
            for filename, values in labels.items():
                if not isinstance(values, list):
                    raise TaskDataError(f"{path}: labels of {filename!r} must be a list, got {values!r}")
                items.append(Item(id=f"{split}/{filename}", path=str(folder / filename),
                                  labels=[str(v) for v in values], split=split))
        return items

    def audio(self, item: Item, sample_rate: int) -> np.ndarray:
        """Read the copy at the rate asked for when the folder has it (no resampling)."""
        if sample_rate in self.rates and sample_rate != self.sample_rate:
            path = Path(item.path)
            candidate = self.root / str(sample_rate) / path.parent.name / path.name
            if candidate.is_file():
                item = Item(item.id, str(candidate), item.labels, item.split, item.start, item.end)
        return super().audio(item, sample_rate)
