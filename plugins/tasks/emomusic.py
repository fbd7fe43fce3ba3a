"""EMOMusic: static arousal and valence regression on 45-second clips."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musicrep.config import interval, path_field
from musicrep.tasks import Item, Task, TaskDataError, require_dir, split_by_ratio


class EmoMusicTask(Task):
    """EMOMusic (regression): mean arousal and valence; test = the MediaEval 2013 evaluation set.

    Reads ``songs_info.csv`` and ``static_annotations.csv`` (from ``path`` or
    ``path/annotations``) and ``clips_45seconds/{song_id}.mp3``. The development set is split
    into train and valid by artist (``valid_fraction``, as JukeMIR does 8:2). With
    ``standardize`` the targets are z-scored with the development set's statistics.
    """

    @dataclass
    class Config:
        path: str = path_field()
        valid_fraction: float = interval(0, 1, 0.2, low_open=True, high_open=True)
        standardize: bool = True
        seed: int = 0

    kind = "regression"
    label_names = ["arousal", "valence"]
    sample_rate = 44100

    def __init__(self, config: "EmoMusicTask.Config") -> None:
        super().__init__()
        self.config = config
        self.root = require_dir(config.path, "an EMOMusic copy: songs_info.csv, static_annotations.csv "
                                "and clips_45seconds/")
        self.songs = self._find("songs_info.csv", "song metadata (song_id, Artist, Mediaeval 2013 set)")
        self.static = self._find("static_annotations.csv", "static annotations (song_id, mean_arousal, "
                                 "mean_valence)")
        self.clips = require_dir(self.root / "clips_45seconds", "EMOMusic's 45-second mp3 clips "
                                 "(clips_45seconds/{song_id}.mp3)")

    def _find(self, name: str, what: str) -> Path:
        for folder in (self.root, self.root / "annotations"):
            if (folder / name).is_file():
                return folder / name
        raise TaskDataError(f"missing file {self.root / name} (or {self.root / 'annotations' / name}): "
                            f"EMOMusic's {what}")

    def load_items(self) -> list[Item]:
        info = {int(r["song_id"]): r for r in _csv(self.songs, ("song_id", "Artist", "Mediaeval 2013 set"))}
        rows = []
        for r in _csv(self.static, ("song_id", "mean_arousal", "mean_valence")):
            song = int(r["song_id"])
            if song not in info:
                raise TaskDataError(f"{self.static}: song {song} is not in {self.songs}")
            meta = info[song]
            if meta["Mediaeval 2013 set"].lower().startswith("evaluation"):
                split = "test"
            else:
                artist = " ".join(meta["Artist"].lower().split())
                split = split_by_ratio(f"artist:{artist}", [1 - self.config.valid_fraction,
                                                            self.config.valid_fraction],
                                       self.config.seed, ("train", "valid"))
            rows.append((song, split, [float(r["mean_arousal"]), float(r["mean_valence"])]))
        targets = np.asarray([t for _, _, t in rows], dtype=np.float64)
        if self.config.standardize:
            dev = targets[[s != "test" for _, s, _ in rows]]
            targets = (targets - dev.mean(axis=0)) / np.maximum(dev.std(axis=0), 1e-12)
        return [Item(id=str(song), path=str(self.clips / f"{song}.mp3"), labels=[float(v) for v in t],
                     split=split) for (song, split, _), t in zip(rows, targets)]


def _csv(path: Path, columns: tuple[str, ...]) -> list[dict]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in csv.DictReader(f)]
    if not rows:
        raise TaskDataError(f"{path}: no rows")
    missing = [c for c in columns if c not in rows[0]]
    if missing:
        raise TaskDataError(f"{path}: no column {missing[0]!r}; columns: {', '.join(rows[0])}")
    return rows
