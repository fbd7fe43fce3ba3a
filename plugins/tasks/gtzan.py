"""GTZAN genre classification with the fault-filtered split of Kereliuk et al. (2015)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePath

from musicrep.config import path_field
from musicrep.tasks import Item, Task, TaskDataError, read_lines, require_dir

_SPLIT_FILES = {"train": "train_filtered.txt", "valid": "valid_filtered.txt", "test": "test_filtered.txt"}
_STEM = re.compile(r"^([a-z]+)\.(\d{5})$")


class GtzanTask(Task):
    """GTZAN (10 genres) on the fault-filtered split (as in JukeMIR and MARBLE), from a local copy.

    Audio ``{genre}/{genre}.000NN.wav`` (or .au) under ``path``, ``path/genres`` or
    ``path/genres_original``. The split lists ``train_filtered.txt``, ``valid_filtered.txt`` and
    ``test_filtered.txt`` (one ``genre/genre.000NN.wav`` per line, as published with the
    split) are read from ``split_dir``, default ``path``.
    """

    @dataclass
    class Config:
        path: str = path_field()
        split_dir: str | None = path_field(None)

    kind = "multiclass"
    sample_rate = 22050

    def __init__(self, config: "GtzanTask.Config") -> None:
        super().__init__()
        self.config = config
        self.root = require_dir(config.path, "a GTZAN copy: genre folders (blues/, classical/, ...) "
                                "holding blues.00000.wav and so on")
        split_dir = require_dir(config.split_dir, "the folder of the GTZAN split lists") \
            if config.split_dir else self.root
        self.split_files = {}
        for split, name in _SPLIT_FILES.items():
            path = split_dir / name
            if not path.is_file():
                raise TaskDataError(
                    f"missing file {path}: GTZAN's fault-filtered split list. It is not part of the "
                    "GTZAN archive: get train_filtered.txt, valid_filtered.txt and test_filtered.txt "
                    "(the 'GTZAN_split' lists of Kereliuk et al. 2015, one 'genre/genre.000NN.wav' "
                    f"per line) and put them in {split_dir}, or set split_dir to their folder")
            self.split_files[split] = path
        self._audio = self._scan()
        self._entries = self._read_splits()
        self.label_names = sorted({stem.split(".")[0] for stem, _ in self._entries})

    def _scan(self) -> dict[str, Path]:
        """stem -> audio file, from whichever folder layout the copy uses."""
        found: dict[str, Path] = {}
        for base in (self.root / "genres", self.root / "genres_original", self.root):
            if not base.is_dir():
                continue
            for path in sorted(base.glob("*/*.*")):
                if path.suffix.lower() in (".wav", ".au") and _STEM.match(path.stem):
                    found.setdefault(path.stem, path)
            if found:
                return found
        raise TaskDataError(f"{self.root}: no GTZAN audio found; expected genre folders such as "
                            f"{self.root / 'blues' / 'blues.00000.wav'}")

    def _read_splits(self) -> list[tuple[str, str]]:
        entries, seen = [], {}
        for split, path in self.split_files.items():
            for line in read_lines(path):
                stem = PurePath(line).stem
                if not _STEM.match(stem):
                    raise TaskDataError(f"{path}: line {line!r} is not a GTZAN file name (genre.000NN.wav)")
                if stem in seen:
                    raise TaskDataError(f"{path}: {stem} is already in the {seen[stem]} split")
                seen[stem] = split
                entries.append((stem, split))
        return entries

    def load_items(self) -> list[Item]:
        items = []
        for stem, split in self._entries:
            genre = stem.split(".")[0]
            path = self._audio.get(stem, self.root / genre / f"{stem}.wav")
            items.append(Item(id=stem, path=str(path), labels=[genre], split=split))
        return items
