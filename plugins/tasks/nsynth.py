"""NSynth single notes: pitch or instrument family, on the official train/valid/test sets."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from musicrep.config import interval, path_field, positive
from musicrep.tasks import (Item, Task, TaskDataError, as_mapping, read_json, require_dir,
                            require_file, stable_fraction)

_SPLIT_DIRS = {"train": "nsynth-train", "valid": "nsynth-valid", "test": "nsynth-test"}
FAMILIES = ("bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed", "string",
            "synth_lead", "vocal")


class NSynthTask(Task):
    """NSynth (multiclass): MIDI pitch (default 21-108, the 88 piano keys) or instrument family (11).

    Reads ``nsynth-{train,valid,test}/examples.json`` and ``audio/{note_str}.wav`` under
    ``path``. ``max_per_split`` keeps a fixed hash-chosen subset (the train set has 289k notes).
    """

    @dataclass
    class Config:
        path: str = path_field()
        label: Literal["pitch", "instrument_family"] = "pitch"
        pitch_min: int = interval(0, "pitch_max", 21)
        pitch_max: int = interval(0, 127, 108)
        max_per_split: int | None = positive(None)

    kind = "multiclass"
    sample_rate = 16000

    def __init__(self, config: "NSynthTask.Config") -> None:
        super().__init__()
        self.config = config
        self.root = require_dir(config.path, "an NSynth copy holding nsynth-train/, nsynth-valid/ "
                                "and nsynth-test/ (each with examples.json and audio/)")
        self.examples = {split: require_file(self.root / d / "examples.json",
                                             f"NSynth's {split} note metadata ({d}.jsonwav.tar.gz)")
                         for split, d in _SPLIT_DIRS.items()}
        if config.label == "pitch":
            self.label_names = [str(p) for p in range(config.pitch_min, config.pitch_max + 1)]
        else:
            self.label_names = list(FAMILIES)

    @property
    def name(self) -> str:
        return f"nsynth:{self.config.label}"

    def load_items(self) -> list[Item]:
        c = self.config
        items = []
        for split, path in self.examples.items():
            notes = as_mapping(read_json(path), path, "NSynth examples")
            chosen = []
            for note, meta in notes.items():
                try:
                    label = str(meta["pitch"]) if c.label == "pitch" else str(meta["instrument_family_str"])
                except (KeyError, TypeError):
                    raise TaskDataError(f"{path}: note {note!r} lacks "
                                        f"{'pitch' if c.label == 'pitch' else 'instrument_family_str'}") from None
                if c.label == "pitch" and not c.pitch_min <= int(label) <= c.pitch_max:
                    continue
                chosen.append(Item(id=note, path=str(path.parent / "audio" / f"{note}.wav"),
                                   labels=[label], split=split))
            if c.max_per_split is not None and len(chosen) > c.max_per_split:
                chosen = sorted(chosen, key=lambda item: stable_fraction(0, item.id))[: c.max_per_split]
            items.extend(sorted(chosen, key=lambda item: item.id))
        return items
