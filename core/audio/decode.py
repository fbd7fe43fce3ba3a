"""Decode an audio file to a mono float32 wave at the sample rate a model wants.

soundfile (libsndfile) reads wav, flac, ogg/vorbis/opus and, from libsndfile 1.1, mp3. 16-bit
and 24/32-bit PCM are read as integers and mixed to mono by one fused kernel (half the memory
traffic of reading float); everything else is read as float32. soxr resamples. Any file that
cannot give clean audio raises ``BadAudioError`` with the file's path in the message.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from musicrep.audio.kernels import fit_length, mix_to_mono, pcm_to_mono
from musicrep.errors import MusicrepError, one_line

_INT_SUBTYPES = {"PCM_16": "int16", "PCM_24": "int32", "PCM_32": "int32"}
#: the sample rates musicrep reads (Hz): a header outside them is no recording (a 1 Hz "WAV"
#: resampled to 16 kHz would inflate 16 000-fold)
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 768_000
#: the most samples one decode may make: frames x channels read, and samples after resampling
#: (2**30 float32 = 4 GiB; over 3 hours of 48 kHz stereo, 18 hours at 16 kHz). Checked against
#: the header before decoding, as Pillow refuses a decompression bomb before it inflates it
MAX_SAMPLES = 2**30
#: frames decoded at a time: what a header claims is never allocated before the file gives it
BLOCK_FRAMES = 1 << 20


class BadAudioError(MusicrepError):
    """A file that is missing, unreadable, empty, corrupt, not audio, or holds NaN/inf samples."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"{one_line(self.path)}: {one_line(reason)}")

    def __reduce__(self):  # crosses process boundaries from data-loader workers intact
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says; enough to plan windows and crops without decoding."""

    duration: float
    sample_rate: int
    channels: int
    frames: int


def _existing_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise BadAudioError(p, "no such file")
    if not p.is_file():
        raise BadAudioError(p, "not a file")
    if p.stat().st_size == 0:
        raise BadAudioError(p, "empty file (0 bytes)")
    return p


def _unreadable(p: Path, exc: Exception) -> BadAudioError:
    """libsndfile's complaint without the path it repeats; for a file that exists but is no audio
    format it knows, it says "does not exist", which would send the user looking in the wrong place."""
    detail = str(exc).replace(f"Error opening {str(p)!r}: ", "").strip()
    if "does not exist" in detail or "Format not recognised" in detail:
        detail = "format not recognised"
    return BadAudioError(p, f"not readable as audio ({detail})")


def _wav_truncation(p: Path) -> str | None:
    """Why a RIFF/WAVE file is cut short, or None: its data chunk declaring more bytes than the
    file holds. libsndfile quietly reads what is there, so a half-copied file would pass as a
    shorter track."""
    size = p.stat().st_size
    with p.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        for _ in range(64):  # a WAV has a handful of chunks before its data
            f.seek(pos)
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            declared = int.from_bytes(chunk[4:], "little")
            if chunk[:4] == b"data":
                available = size - pos - 8
                if declared not in (0, 0xFFFFFFFF) and declared > available:  # 0 / ~0: length unknown
                    return (f"truncated: its header declares {declared} bytes of audio, the file holds "
                            f"{available}")
                return None
            pos += 8 + declared + (declared & 1)
    return None


def info(path: str | Path) -> AudioInfo:
    """The header of ``path``: duration (s), sample rate, channels and frames."""
    p = _existing_file(path)
    try:
        meta = sf.info(str(p))
    except (RuntimeError, ValueError, OSError) as exc:
        raise _unreadable(p, exc) from None
    if meta.frames <= 0 or meta.samplerate <= 0 or meta.channels <= 0:
        raise BadAudioError(p, "empty: the file holds no audio frames")
    _check_header_rate(p, meta.samplerate)
    return AudioInfo(duration=meta.frames / meta.samplerate, sample_rate=int(meta.samplerate),
                     channels=int(meta.channels), frames=int(meta.frames))


def _check_header_rate(p: Path, rate: int) -> None:
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise BadAudioError(p, f"its header says {rate} Hz; musicrep reads {MIN_SAMPLE_RATE} to "
                               f"{MAX_SAMPLE_RATE} Hz")


def _check_size(p: Path, frames: int, channels: int, rate: int, sample_rate: int) -> None:
    """Refuse a decode of ``frames`` x ``channels`` at ``rate`` that would make more than
    ``MAX_SAMPLES`` samples, before any is decoded."""
    out = math.ceil(frames * sample_rate / rate)
    if frames * channels > MAX_SAMPLES or out > MAX_SAMPLES:
        raise BadAudioError(p, f"too large to decode: its header declares {frames} frames x {channels} channels at "
                               f"{rate} Hz ({max(frames * channels, out)} samples at {sample_rate} Hz; musicrep "
                               f"decodes at most {MAX_SAMPLES})")


def _read_blocks(f: sf.SoundFile, count: int, dtype: str) -> np.ndarray:
    """Up to ``count`` frames (-1: to the end) ``[frames, channels]``, decoded a block at a time, so
    memory follows what the file really holds, never more than ``MAX_SAMPLES``."""
    blocks, total = [], 0
    while count < 0 or total < count:
        want = BLOCK_FRAMES if count < 0 else min(BLOCK_FRAMES, count - total)
        block = f.read(frames=want, dtype=dtype, always_2d=True)
        if not len(block):
            break
        blocks.append(block)
        total += len(block)
        if total * f.channels > MAX_SAMPLES:
            raise BadAudioError(f.name, f"too large to decode: more than {MAX_SAMPLES} samples")
    if len(blocks) == 1:
        return blocks[0]
    return np.concatenate(blocks) if blocks else np.zeros((0, f.channels), dtype=dtype)


def _check_rate(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer (Hz), got {value!r}")
    return int(value)


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """``x`` (a mono float wave) resampled from ``rate_in`` to ``rate_out`` Hz with soxr (HQ)."""
    rate_in, rate_out = _check_rate(rate_in, "rate_in"), _check_rate(rate_out, "rate_out")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"resample takes a mono wave [T], got shape {x.shape}")
    if rate_in == rate_out:
        return x
    return np.ascontiguousarray(soxr.resample(x, rate_in, rate_out, quality="HQ"), dtype=np.float32)


def load(path: str | Path, sample_rate: int, *, offset: float = 0.0,
         duration: float | None = None) -> np.ndarray:
    """Mono float32 samples ``[T]`` of ``path`` at ``sample_rate`` Hz.

    ``offset`` and ``duration`` (seconds, in the file's time) select a segment without decoding
    the rest where the format can seek; a segment running past the end is returned shorter
    (use ``fit_length`` to pad). Raises ``BadAudioError`` naming the file.
    """
    sample_rate = _check_rate(sample_rate, "sample_rate")
    if not (isinstance(offset, (int, float)) and math.isfinite(offset) and offset >= 0):
        raise ValueError(f"offset must be seconds >= 0, got {offset!r}")
    if duration is not None and not (isinstance(duration, (int, float)) and math.isfinite(duration)
                                     and duration > 0):
        raise ValueError(f"duration must be positive seconds or None, got {duration!r}")
    p = _existing_file(path)
    truncated = _wav_truncation(p)
    if truncated:
        raise BadAudioError(p, truncated)
    try:
        with sf.SoundFile(str(p)) as f:
            rate, frames = f.samplerate, f.frames
            _check_header_rate(p, rate)
            start = int(round(offset * rate))
            if start and frames > 0 and start >= frames:
                raise BadAudioError(p, f"offset {offset:g} s is past the end of the audio "
                                       f"({frames / rate:.3f} s)")
            count = -1 if duration is None else max(1, int(round(duration * rate)))
            _check_size(p, max(0, frames - start) if count < 0 else min(count, max(0, frames - start)), f.channels,
                        rate, sample_rate)
            if start:
                f.seek(start)
            data = _read_blocks(f, count, _INT_SUBTYPES.get(f.subtype, "float32"))
            expected = frames - start if count < 0 else min(count, frames - start)
            # MPEG headers estimate their length: allow two frames (2 x 1152 samples) and 1 %
            slack = 2304 + expected // 100 if f.format == "MP3" else 0
            if frames > 0 and data.shape[0] < expected - slack:
                raise BadAudioError(p, f"truncated: its header declares {frames} frames, only "
                                       f"{start + data.shape[0]} could be decoded")
    except BadAudioError:
        raise
    except (RuntimeError, ValueError, OSError, EOFError) as exc:
        raise _unreadable(p, exc) from None
    if data.shape[0] == 0:
        raise BadAudioError(p, "empty: no audio frames" + (f" after {offset:g} s" if start else ""))
    wave = pcm_to_mono(data) if data.dtype.kind == "i" else mix_to_mono(data)
    if not np.isfinite(wave).all():
        raise BadAudioError(p, "holds NaN or infinite samples")
    wave = resample(wave, rate, sample_rate)
    if wave.size == 0:
        raise BadAudioError(p, f"too short: {len(data)} frames at {rate} Hz make no sample at {sample_rate} Hz")
    if rate != sample_rate and not np.isfinite(wave).all():  # finite samples so large the filter overflows
        raise BadAudioError(p, f"samples too large to resample (up to {float(np.abs(data).max()):.3g})")
    return wave


def seek_crops(path: str | Path, sample_rate: int, seconds: float, count: int, rng: np.random.Generator, *,
               start: float = 0.0, end: float | None = None) -> np.ndarray | None:
    """``count`` crops ``[count, samples]`` of ``seconds`` from uniform random starts within
    ``[start, end)`` seconds of ``path``, each read by seeking to it and resampled alone, so the
    cost follows the crop length, not the track's. None when the stretch is shorter than a crop
    (the caller decodes it whole and repeats it).

    libsndfile seeks in WAV, AIFF, FLAC, OGG (Vorbis, Opus) and MP3. Measured on a 4-minute
    22.05 kHz track, one 3 s crop at 16 kHz against decoding the whole track (libsndfile 1.2.2,
    loaded 2-core machine): WAV 12 ms vs 3.0 s, FLAC 10 ms vs 0.64 s, OGG/Vorbis 12 ms vs
    3.9 s, MP3 92 ms vs 1.2 s: MP3 crops cost several times more than the others, still a
    small fraction of the track. (Exactness of the MP3/OGG seek position is libsndfile's and
    is not tested here; the tests check WAV and FLAC to the sample.)
    """
    meta = info(path)
    first = int(round(start * meta.sample_rate))
    last = meta.frames if end is None else min(meta.frames, int(round(end * meta.sample_rate)))
    crop_frames = int(round(seconds * meta.sample_rate))
    if last - first < crop_frames or crop_frames <= 0:
        return None
    length = int(round(seconds * sample_rate))
    starts = rng.integers(first, last - crop_frames + 1, size=count)
    return np.stack([fit_length(load(path, sample_rate, offset=s / meta.sample_rate, duration=seconds), length)
                     for s in starts])
