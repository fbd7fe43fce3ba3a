"""MTG-Jamendo auto-tagging (genre, mood/theme, instrument, top-50) on the published splits."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from musicrep.config import interval, path_field
from musicrep.tasks import Item, Task, TaskDataError, read_text, require_dir

_SPLIT_NAMES = {"train": "train", "valid": "validation", "test": "test"}


class JamendoTask(Task):
    """MTG-Jamendo (multilabel) on split-N of the dataset repository: genre, moodtheme, instrument or top50tags.

    ``path`` holds the audio (``00/``..``99/``, full ``.mp3`` or ``.low.mp3``); ``splits_dir``
    the split TSVs of github.com/MTG/mtg-jamendo-dataset, ``data/splits/split-0`` by default
    looked up under ``path``. Labels are the tags as written there (``genre---rock``).
    """

    @dataclass
    class Config:
        path: str = path_field()
        subset: Literal["genre", "moodtheme", "instrument", "top50tags"] = "top50tags"
        split: int = interval(0, 4, 0, what="one of the published splits 0..4")
        splits_dir: str | None = path_field(None)

    kind = "multilabel"
    sample_rate = 44100

    def __init__(self, config: "JamendoTask.Config") -> None:
        super().__init__()
        self.config = config
        self.root = require_dir(config.path, "an MTG-Jamendo audio copy (folders 00..99 of mp3 files)")
        if config.splits_dir:
            splits = require_dir(config.splits_dir, f"the split-{config.split} TSVs of the "
                                 "mtg-jamendo-dataset repository")
        else:
            candidates = [self.root / sub / f"split-{config.split}"
                          for sub in ("data/splits", "splits", "mtg-jamendo-dataset/data/splits")]
            splits = next((c for c in candidates if c.is_dir()), None)
            if splits is None:
                raise TaskDataError(
                    f"no split-{config.split} folder under {self.root} (looked for "
                    f"{', '.join(str(c) for c in candidates)}); clone github.com/MTG/mtg-jamendo-dataset "
                    "and set splits_dir to its data/splits/split-N folder")
        self.files = {}
        for split, suffix in _SPLIT_NAMES.items():
            path = splits / f"autotagging_{config.subset}-{suffix}.tsv"
            if not path.is_file():
                raise TaskDataError(f"missing file {path}: the {config.subset} {suffix} split of "
                                    "MTG-Jamendo (from the mtg-jamendo-dataset repository)")
            self.files[split] = path
        self._entries = [entry for split, path in self.files.items() for entry in _read(path, split)]
        self.label_names = sorted({tag for _, _, tags, _ in self._entries for tag in tags})

    @property
    def name(self) -> str:
        return f"mtg-jamendo:{self.config.subset}"

    def _audio_path(self, rel: str) -> Path:
        path = self.root / rel
        if not path.is_file():
            low = path.with_name(path.stem + ".low.mp3")
            if low.is_file():
                return low
        return path

    def load_items(self) -> list[Item]:
        return [Item(id=track, path=str(self._audio_path(rel)), labels=tags, split=split)
                for track, rel, tags, split in self._entries]


def _read(path: Path, split: str) -> list[tuple[str, str, list[str], str]]:
    """Rows TRACK_ID, ARTIST_ID, ALBUM_ID, PATH, DURATION, TAG, TAG, ... (tags tab-separated)."""
    lines = read_text(path).splitlines()
    if not lines or not lines[0].startswith("TRACK_ID"):
        raise TaskDataError(f"{path}: expected a header TRACK_ID, ARTIST_ID, ALBUM_ID, PATH, DURATION, TAGS")
    out = []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 6:
            raise TaskDataError(f"{path}, line {n}: expected at least 6 tab-separated fields")
        out.append((fields[0], fields[3], sorted({t.strip() for t in fields[5:] if t.strip()}), split))
    return out
