"""GiantSteps Key: 24-way key estimation of electronic dance music."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from musicrep.config import interval, path_field
from musicrep.keys import KEY_NAMES, normalize_key
from musicrep.tasks import (KEY_METRICS, Item, Task, TaskDataError, read_text, require_dir, require_file,
                            split_by_ratio)


class GiantStepsKeyTask(Task):
    """GiantSteps Key (24 keys): train/valid from giantsteps-mtg-key, test on giantsteps-key.

    ``path`` is a copy of the giantsteps-key-dataset (``annotations/key/{id}.LOFI.key`` and
    ``audio/{id}.LOFI.mp3``: the 604 test tracks); ``train_path`` a copy of the
    giantsteps-mtg-key-dataset (``annotations/annotations.txt``,
    ``annotations/beatport_metadata.txt``, ``audio/{id}.LOFI.mp3``). As in Korzeniowski & Widmer
    (2018) and JukeMIR, training keeps tracks annotated with confidence 2 and a single key.
    Validation takes ``valid_fraction`` of the artists (collaborating artists stay together).
    """

    @dataclass
    class Config:
        path: str = path_field()
        train_path: str = path_field()
        valid_fraction: float = interval(0, 1, 0.15, low_open=True, high_open=True)
        seed: int = 0

    kind = "multiclass"
    metrics = list(KEY_METRICS)
    label_names = list(KEY_NAMES)
    sample_rate = 44100

    def __init__(self, config: "GiantStepsKeyTask.Config") -> None:
        super().__init__()
        self.config = config
        self.test_root = require_dir(config.path, "a copy of the giantsteps-key-dataset "
                                     "(annotations/key/*.LOFI.key and audio/*.LOFI.mp3)")
        self.key_dir = require_dir(self.test_root / "annotations" / "key",
                                   "GiantSteps Key's per-track key files ({id}.LOFI.key)")
        self.train_root = require_dir(config.train_path, "a copy of the giantsteps-mtg-key-dataset "
                                      "(annotations/annotations.txt, annotations/beatport_metadata.txt, "
                                      "audio/*.LOFI.mp3)")
        self.train_annotations = require_file(self.train_root / "annotations" / "annotations.txt",
                                              "the MTG key annotations (columns ID, MANUAL KEY, C)")
        self.train_metadata = require_file(self.train_root / "annotations" / "beatport_metadata.txt",
                                           "the Beatport metadata (columns ID, ARTIST), for the artist split")

    def load_items(self) -> list[Item]:
        return self._train_items() + self._test_items()

    def _test_items(self) -> list[Item]:
        items = []
        for path in sorted(self.key_dir.glob("*.LOFI.key")):
            track = path.name.split(".")[0]
            text = read_text(path).strip()
            try:
                key = normalize_key(text)
            except ValueError:
                raise TaskDataError(f"{path}: cannot read the key {text!r}") from None
            items.append(Item(id=f"test/{track}", path=str(self.test_root / "audio" / f"{track}.LOFI.mp3"),
                              labels=[key], split="test"))
        if not items:
            raise TaskDataError(f"{self.key_dir}: no *.LOFI.key files")
        return items

    def _train_items(self) -> list[Item]:
        artists = {row["ID"].strip(): [a.strip() for a in (row.get("ARTIST") or "").split(",") if a.strip()]
                   for row in _tsv(self.train_metadata, ("ID", "ARTIST"))}
        group = _artist_groups(artists.values())
        items = []
        for row in _tsv(self.train_annotations, ("ID", "MANUAL KEY", "C")):
            track, key, confidence = row["ID"].strip(), row["MANUAL KEY"].strip(), row["C"].strip()
            if confidence != "2" or "/" in key:
                continue
            try:
                key = normalize_key(key)
            except ValueError:
                continue  # "-" and other non-key annotations
            names = artists.get(track) or [f"track:{track}"]
            split = split_by_ratio(group.get(names[0], names[0]),
                                   [1 - self.config.valid_fraction, self.config.valid_fraction],
                                   self.config.seed, ("train", "valid"))
            items.append(Item(id=f"mtg/{track}", path=str(self.train_root / "audio" / f"{track}.LOFI.mp3"),
                              labels=[key], split=split))
        if not items:
            raise TaskDataError(f"{self.train_annotations}: no confidently annotated single-key tracks")
        return items


def _tsv(path: Path, columns: tuple[str, ...]) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        fields = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in columns if c not in fields]
        if missing:
            raise TaskDataError(f"{path}: no column {missing[0]!r}; columns: {', '.join(fields)}")
        return [{(k or "").strip(): (v or "") for k, v in row.items()} for row in reader]


def _artist_groups(credits) -> dict[str, str]:
    """artist -> a representative of every artist linked to it by shared tracks (union-find),
    so that collaborators never straddle train and valid."""
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        parent.setdefault(a, a)
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for names in credits:
        for other in names[1:]:
            ra, rb = find(names[0]), find(other)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
        if names:
            find(names[0])
    return {a: find(a) for a in parent}
