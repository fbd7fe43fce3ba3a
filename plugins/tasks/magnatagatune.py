"""MagnaTagATune: top-50 tag auto-tagging with the 12:1:3 split of MusiCNN and JukeMIR."""
from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from musicrep.config import path_field, positive
from musicrep.tasks import Item, Task, TaskDataError, require_dir, require_file

#: Clips whose mp3 in the official archive is empty; the standard split leaves them out.
KNOWN_CORRUPT = frozenset({"35644", "55753", "57881"})
_TRAIN, _VALID, _TEST = "0123456789ab", "c", "def"


class MagnaTagATuneTask(Task):
    """MagnaTagATune (multilabel): the n most frequent tags; folders 0-b train, c valid, d-f test.

    Reads ``annotations_final.csv`` (tab-separated, one 0/1 column per tag) and the mp3 folders
    ``0``..``f`` from ``path`` (or ``path/mp3``). The top tags are counted over the whole
    annotation file, ties broken by name, as in JukeMIR.
    """

    @dataclass
    class Config:
        path: str = path_field()
        n_tags: int = positive(50)
        drop_untagged: bool = False  # leave out clips with none of the top tags
        skip_known_corrupt: bool = True  # the three empty mp3s of the official archive

    kind = "multilabel"
    sample_rate = 16000

    def __init__(self, config: "MagnaTagATuneTask.Config") -> None:
        super().__init__()
        self.config = config
        self.root = require_dir(config.path, "a MagnaTagATune copy: annotations_final.csv and the mp3 "
                                "folders 0..f (or mp3/0..f)")
        self.annotations = require_file(self.root / "annotations_final.csv",
                                        "MagnaTagATune's tag annotations (from the dataset's download page)")
        self.audio_root = self.root / "mp3" if (self.root / "mp3").is_dir() else self.root
        self._rows, tags = self._read()
        counts = Counter({tag: 0 for tag in tags})
        for _, _, clip_tags in self._rows:
            counts.update(clip_tags)
        if len(tags) < config.n_tags:
            raise TaskDataError(f"{self.annotations}: only {len(tags)} tag columns, n_tags is {config.n_tags}")
        self.label_names = sorted(sorted(counts, key=lambda t: (-counts[t], t))[: config.n_tags])

    def _read(self) -> tuple[list[tuple[str, str, list[str]]], list[str]]:
        with self.annotations.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter="\t")
            columns = reader.fieldnames or []
            if "clip_id" not in columns or "mp3_path" not in columns:
                raise TaskDataError(f"{self.annotations}: expected tab-separated columns clip_id, <tags...>, "
                                    f"mp3_path; got {columns[:3]}...")
            tags = [c for c in columns if c not in ("clip_id", "mp3_path")]
            rows = []
            for row in reader:
                clip_tags = [t for t in tags if (row.get(t) or "").strip() == "1"]
                rows.append((str(int(row["clip_id"])), (row["mp3_path"] or "").strip(), clip_tags))
        return rows, tags

    def load_items(self) -> list[Item]:
        top = set(self.label_names)
        items = []
        for clip_id, mp3, clip_tags in self._rows:
            if not mp3 or (self.config.skip_known_corrupt and clip_id in KNOWN_CORRUPT):
                continue
            folder = mp3.split("/")[0]
            split = "train" if folder in _TRAIN else "valid" if folder in _VALID else \
                "test" if folder in _TEST else None
            if split is None or len(folder) != 1:
                raise TaskDataError(f"{self.annotations}: clip {clip_id} has mp3_path {mp3!r}, "
                                    "expected it under a folder 0..f")
            labels = sorted(t for t in clip_tags if t in top)
            if self.config.drop_untagged and not labels:
                continue
            items.append(Item(id=clip_id, path=str(self.audio_root / Path(mp3)), labels=labels, split=split))
        return items
