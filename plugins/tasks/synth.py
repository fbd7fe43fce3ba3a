"""Generated audio with known labels (pitch class, timbre, key or tempo), for tests and demos."""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal

import numpy as np

from musicrep.config import interval, non_negative, positive
from musicrep.keys import TONICS
from musicrep.tasks import KEY_METRICS, Item, Task

SPLITS = ("train", "valid", "test")

# Timbre families: partial frequency ratios and amplitudes, envelope (attack s, decay time
# constant s or 0 for sustained), and modulation (vibrato rate Hz, depth as a frequency
# fraction; tremolo rate Hz, depth). Distinct spectra and envelopes, all with a strong lowest
# partial so the fundamental is the lowest spectral peak.
_FAMILIES: dict[str, dict] = {
    "flute": dict(ratios=[1, 2, 3, 4], amps=[1.0, 0.25, 0.08, 0.03], attack=0.08, decay=0.0,
                  vibrato=(4.5, 0.003), tremolo=(0.0, 0.0), breath=0.03),
    "clarinet": dict(ratios=[1, 3, 5, 7, 9], amps=[1.0, 0.45, 0.25, 0.14, 0.08], attack=0.03, decay=0.0,
                     vibrato=(0.0, 0.0), tremolo=(0.0, 0.0), breath=0.0),
    "brass": dict(ratios=list(range(1, 11)), amps=[0.8 * n ** -0.6 for n in range(1, 11)], attack=0.05,
                  decay=0.0, vibrato=(5.0, 0.002), tremolo=(0.0, 0.0), breath=0.0),
    "string": dict(ratios=list(range(1, 13)), amps=[1.0 / n for n in range(1, 13)], attack=0.15, decay=0.0,
                   vibrato=(5.5, 0.004), tremolo=(0.0, 0.0), breath=0.0),
    "pluck": dict(ratios=list(range(1, 9)), amps=[n ** -1.2 for n in range(1, 9)], attack=0.002, decay=0.35,
                  vibrato=(0.0, 0.0), tremolo=(0.0, 0.0), breath=0.0),
    "organ": dict(ratios=[1, 2, 4, 8], amps=[1.0, 0.7, 0.5, 0.3], attack=0.01, decay=0.0,
                  vibrato=(0.0, 0.0), tremolo=(0.0, 0.0), breath=0.0),
    "bell": dict(ratios=[1.0, 2.76, 5.40, 8.93], amps=[1.0, 0.6, 0.4, 0.25], attack=0.001, decay=0.9,
                 vibrato=(0.0, 0.0), tremolo=(0.0, 0.0), breath=0.0),
    "square": dict(ratios=list(range(1, 16, 2)), amps=[1.0 / n for n in range(1, 16, 2)], attack=0.01,
                   decay=0.0, vibrato=(0.0, 0.0), tremolo=(6.0, 0.35), breath=0.0),
}
FAMILIES: tuple[str, ...] = tuple(_FAMILIES)
# Keys in an order that mixes modes and relative pairs, so a small subset is not trivial.
KEY_ORDER: tuple[str, ...] = tuple(
    f"{TONICS[pc]} {mode}" for pc, mode in
    [(0, "major"), (9, "minor"), (7, "major"), (4, "minor"), (5, "major"), (2, "minor"), (2, "major"),
     (11, "minor"), (10, "major"), (7, "minor"), (9, "major"), (6, "minor"), (3, "major"), (0, "minor"),
     (4, "major"), (1, "minor"), (8, "major"), (5, "minor"), (11, "major"), (8, "minor"), (1, "major"),
     (10, "minor"), (6, "major"), (3, "minor")])
# Tempi far enough apart (>= 9 %) and free of exact doublings.
BPMS: tuple[int, ...] = (66, 76, 88, 100, 112, 126, 144, 160)
_MAX_CLASSES = {"pitch": 12, "timbre": len(FAMILIES), "key": len(KEY_ORDER), "tempo": len(BPMS)}
_DEFAULT_CLASSES = {"pitch": 12, "timbre": 8, "key": 12, "tempo": 8}
_MAJOR_PROGRESSION = [(0, (0, 4, 7)), (5, (0, 4, 7)), (7, (0, 4, 7)), (0, (0, 4, 7))]  # I IV V I
_MINOR_PROGRESSION = [(0, (0, 3, 7)), (5, (0, 3, 7)), (7, (0, 4, 7)), (0, (0, 3, 7))]  # i iv V i


def midi_to_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def _envelope(n: int, sr: int, attack: float, decay: float, release: float = 0.03) -> np.ndarray:
    t = np.arange(n) / sr
    env = np.minimum(t / max(attack, 1.0 / sr), 1.0)
    if decay > 0:
        env = env * np.exp(-np.maximum(t - attack, 0.0) / decay)
    tail = np.clip((n / sr - t) / release, 0.0, 1.0)
    return env * tail


def render_note(f0: float, n: int, sr: int, family: str, rng: np.random.Generator) -> np.ndarray:
    """One note of ``n`` samples: the family's partials with random phases and a little
    per-partial amplitude jitter, shaped by its envelope and modulation."""
    spec = _FAMILIES[family]
    ratios = np.asarray(spec["ratios"], dtype=np.float64)
    keep = ratios * f0 < 0.45 * sr
    ratios = ratios[keep]
    amps = np.asarray(spec["amps"])[keep] * rng.uniform(0.8, 1.2, size=keep.sum())
    amps[0] = spec["amps"][0]
    t = np.arange(n) / sr
    rate, depth = spec["vibrato"]
    phase_t = t if depth == 0 else t - depth * np.cos(2 * np.pi * rate * t) / (2 * np.pi * rate)
    phases = rng.uniform(0, 2 * np.pi, size=ratios.shape[0])
    tone = amps @ np.sin(2 * np.pi * f0 * ratios[:, None] * phase_t[None, :] + phases[:, None])
    rate, depth = spec["tremolo"]
    if depth:
        tone *= 1.0 - depth * (0.5 + 0.5 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)))
    if spec["breath"]:
        tone += spec["breath"] * rng.standard_normal(n)
    return tone * _envelope(n, sr, spec["attack"], spec["decay"])


def _click_track(bpm: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Kicks on every beat (accented downbeats), hi-hat noise bursts on some off-beats."""
    out = np.zeros(n)
    period = 60.0 / bpm
    kick_len, hat_len = int(0.18 * sr), int(0.04 * sr)
    tk = np.arange(kick_len) / sr
    f_hi, f_lo = rng.uniform(100, 160), rng.uniform(40, 60)
    sweep = f_lo + (f_hi - f_lo) * np.exp(-tk / 0.03)
    kick = np.sin(2 * np.pi * np.cumsum(sweep) / sr) * np.exp(-tk / rng.uniform(0.05, 0.12))
    th = np.arange(hat_len) / sr
    hat_decay = rng.uniform(0.005, 0.015)
    hat_prob = rng.uniform(0.3, 0.9)
    beat = 0
    start = rng.uniform(0, period)
    while start < n / sr:
        i = int(start * sr)
        gain = 1.0 if beat % 4 == 0 else rng.uniform(0.5, 0.8)
        seg = kick[: n - i]
        out[i:i + seg.shape[0]] += gain * seg
        off = int((start + period / 2) * sr)
        if off < n and rng.random() < hat_prob:
            hat = rng.standard_normal(hat_len) * np.exp(-th / hat_decay) * 0.3
            seg = hat[: n - off]
            out[off:off + seg.shape[0]] += seg
        start += period
        beat += 1
    return out


class SynthTask(Task):
    """Synthetic clips with known labels (pitch class, timbre, key or tempo), deterministic by seed.

    Each clip draws its nuisances (other factors, octave, +-20 cent detuning, phases, gain,
    onset, white noise) from a generator seeded by ``(seed, label, split, index)``, so an item
    sounds the same on every call and in every process, and nothing touches the disk.
    """

    @dataclass
    class Config:
        label: Literal["pitch", "timbre", "key", "tempo"] = "pitch"
        n_train: int = positive(96)
        n_valid: int = non_negative(24)
        n_test: int = positive(24)
        seconds: float = interval(0.25, 600, 4.0)
        sample_rate: int = interval(4000, 192000, 16000, what="between 4000 and 192000 Hz")
        # default: 12 pitch classes, 8 timbres, 12 keys, 8 tempi; at most the label's
        n_classes: int | None = interval(2, lambda c: _MAX_CLASSES[c["label"]], None)
        noise: float = interval(0, 1, 0.02)  # the largest white-noise std (the clip peaks near 1)
        seed: int = non_negative(0)

    def __init__(self, config: "SynthTask.Config | None" = None) -> None:
        super().__init__()
        self.config = config = config or SynthTask.Config()
        n = config.n_classes or _DEFAULT_CLASSES[config.label]
        self.label_names = {
            "pitch": list(TONICS[:n]), "timbre": list(FAMILIES[:n]), "key": list(KEY_ORDER[:n]),
            "tempo": [f"{bpm} bpm" for bpm in BPMS[:n]],
        }[config.label]
        self.kind = "multiclass"
        if config.label == "key":
            self.metrics = list(KEY_METRICS)
        self.sample_rate = config.sample_rate

    @property
    def name(self) -> str:
        return f"synth:{self.config.label}"

    def load_items(self) -> list[Item]:
        c = self.config
        counts = {"train": c.n_train, "valid": c.n_valid, "test": c.n_test}
        return [Item(id=f"{split}{i:05d}", path=None,
                     labels=[self.label_names[i % len(self.label_names)]], split=split,
                     start=0.0, end=c.seconds)
                for split in SPLITS for i in range(counts[split])]

    def _rng(self, item: Item) -> np.random.Generator:
        key = zlib.crc32(f"{self.config.label}:{item.id}".encode())
        return np.random.default_rng([self.config.seed, key])

    def audio(self, item: Item, sample_rate: int) -> np.ndarray:
        """Generate ``item`` at ``sample_rate`` (the same draws at every rate)."""
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")
        rng = self._rng(item)
        n = int(round(self.config.seconds * sample_rate))
        label = item.labels[0]
        wave = getattr(self, f"_{self.config.label}")(label, n, int(sample_rate), rng)
        wave = wave / max(float(np.abs(wave).max()), 1e-9) * rng.uniform(0.3, 1.0)
        wave = wave + rng.uniform(0.0, self.config.noise) * rng.standard_normal(n)
        return wave.astype(np.float32)

    # -- one generator per label kind ----------------------------------------------------
    @staticmethod
    def _detune(rng: np.random.Generator) -> float:
        return rng.uniform(-0.2, 0.2)  # semitones

    def _notes(self, midis: list[float], family: str, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
        """The notes one after another, each filling its share of the clip after a short gap."""
        out = np.zeros(n)
        share = n // len(midis)
        for k, midi in enumerate(midis):
            gap = int(rng.uniform(0.0, 0.1) * share)
            length = share - gap - int(rng.uniform(0.0, 0.1) * share)
            out[k * share + gap:k * share + gap + length] += render_note(midi_to_hz(midi), length, sr, family, rng)
        return out

    def _pitch(self, label: str, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
        pc = TONICS.index(label)
        family = FAMILIES[rng.integers(len(FAMILIES))]
        detune = self._detune(rng)
        midis = [12 * int(rng.integers(4, 7)) + pc + detune for _ in range(2)]  # octaves 3..5
        return self._notes(midis, family, n, sr, rng)

    def _timbre(self, label: str, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
        midis = [float(rng.integers(48, 77)) + self._detune(rng) for _ in range(2)]
        return self._notes(midis, label, n, sr, rng)

    def _key(self, label: str, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
        tonic_name, mode = label.split()
        tonic = TONICS.index(tonic_name)
        family = FAMILIES[rng.integers(len(FAMILIES) - 1)]  # no bells: their partials blur harmony
        detune = self._detune(rng)
        base = 48 + tonic + (0 if tonic < 6 else -12)
        progression = _MAJOR_PROGRESSION if mode == "major" else _MINOR_PROGRESSION
        out = np.zeros(n)
        share = n // len(progression)
        for k, (degree, triad) in enumerate(progression):
            inversion = int(rng.integers(3))
            notes = [base + degree + step + (12 if j < inversion else 0) for j, step in enumerate(triad)]
            notes.append(base + degree - 12)  # the bass
            chord = sum(render_note(midi_to_hz(m + detune), share, sr, family, rng) for m in notes)
            out[k * share:(k + 1) * share] += chord
        return out

    def _tempo(self, label: str, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
        bpm = float(label.split()[0]) * (1.0 + rng.uniform(-0.01, 0.01))
        return _click_track(bpm, n, sr, rng)
