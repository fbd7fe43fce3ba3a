"""VocalSet: singer identification or singing-technique classification."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from musicrep.config import interval, items, path_field, positive
from musicrep.tasks import Item, Task, TaskDataError, read_text, require_dir, split_by_ratio

#: The ten techniques of Wilkins et al. (2018), as VocalSet names their folders.
TECHNIQUES = ("belt", "breathy", "inhaled", "lip_trill", "spoken", "straight", "trill", "trillo",
              "vibrato", "vocal_fry")
_SINGER = re.compile(r"\b([fm]\d{1,2})\b")
_TEST_LIST = "test_singers_technique.txt"


class VocalSetTask(Task):
    """VocalSet (multiclass): singer (20) or technique (10); technique tested on held-out singers.

    Reads ``{singer}/{context}/{technique}/*.wav`` under ``path`` or ``path/FULL``. For
    ``technique`` the test singers come from VocalSet's ``test_singers_technique.txt`` (or
    ``test_singers``), and ``valid_fraction`` of the other singers' files validate. For
    ``singer`` files are split by ``split_ratios`` with a fixed hash.
    """

    @dataclass
    class Config:
        path: str = path_field()
        label: Literal["singer", "technique"] = "technique"
        test_singers: list[str] | None = None
        techniques: list[str] = items(default=list(TECHNIQUES), what="technique")
        valid_fraction: float = interval(0, 1, 0.1, low_open=True, high_open=True)
        split_ratios: list[float] = items(positive(), [0.8, 0.1, 0.1], length=3)
        seed: int = 0

    kind = "multiclass"
    sample_rate = 44100

    def __init__(self, config: "VocalSetTask.Config") -> None:
        super().__init__()
        self.config = config
        self.root = require_dir(config.path, "a VocalSet copy: singer folders f1..f9, m1..m11 (or FULL/ "
                                "holding them)")
        self.audio_root = self.root / "FULL" if (self.root / "FULL").is_dir() else self.root
        self._files = self._scan()
        if config.label == "technique":
            self.test_singers = self._test_singers()
            self.label_names = sorted(config.techniques)
        else:
            self.label_names = sorted({singer for singer, _, _ in self._files})

    @property
    def name(self) -> str:
        return f"vocalset:{self.config.label}"

    def _scan(self) -> list[tuple[str, str, Path]]:
        files = []
        for path in sorted(self.audio_root.glob("*/**/*.wav")):
            if path.name.startswith("._"):  # macOS resource forks in the zip
                continue
            singer = path.relative_to(self.audio_root).parts[0]
            if _SINGER.fullmatch(singer):
                files.append((singer, path.parent.name, path))
        if not files:
            raise TaskDataError(f"{self.audio_root}: no VocalSet audio; expected e.g. "
                                f"{self.audio_root / 'f1' / 'arpeggios' / 'belt' / 'f1_arpeggios_belt_a.wav'}")
        return files

    def _test_singers(self) -> set[str]:
        if self.config.test_singers:
            return set(self.config.test_singers)
        for folder in (self.root, self.audio_root, self.root.parent):
            path = folder / _TEST_LIST
            if path.is_file():
                singers = set(_SINGER.findall(read_text(path)))
                if not singers:
                    raise TaskDataError(f"{path}: no singer names (f1, m3, ...) in it")
                return singers
        raise TaskDataError(f"missing file {self.root / _TEST_LIST}: VocalSet's list of technique test "
                            "singers (it ships with the dataset); put it there or set test_singers, "
                            "e.g. [\"f2\", \"f8\", \"m3\", \"m5\", \"m10\"]")

    def load_items(self) -> list[Item]:
        c = self.config
        items = []
        for singer, technique, path in self._files:
            rel = path.relative_to(self.audio_root).as_posix()
            if c.label == "technique":
                if technique not in c.techniques:
                    continue
                split = "test" if singer in self.test_singers else split_by_ratio(
                    rel, [1 - c.valid_fraction, c.valid_fraction], c.seed, ("train", "valid"))
                label = technique
            else:
                split, label = split_by_ratio(rel, c.split_ratios, c.seed), singer
            items.append(Item(id=rel, path=str(path), labels=[label], split=split))
        return items
