"""Audio I/O for musicrep: decode, resample, mix to mono, and the CPU kernels data loaders use.

Everything here runs in data-loader workers, outside torch: files are decoded with soundfile
(libsndfile: wav, flac, ogg, mp3), resampled with soxr, and cut into windows or random crops
with numba kernels. A file that cannot give clean audio raises ``BadAudioError`` naming it;
``BadAudioPolicy`` turns that into a reported skip or a hard failure, never a silent drop.
"""
from musicrep.audio.decode import AudioInfo, BadAudioError, info, load, resample, seek_crops
from musicrep.audio.kernels import (crop, fit_length, frame, mix_to_mono, pcm_to_float, pcm_to_mono,
                                    random_crop, random_crop_starts)
from musicrep.audio.policy import BadAudioPolicy

__all__ = [
    "AudioInfo",
    "BadAudioError",
    "BadAudioPolicy",
    "crop",
    "fit_length",
    "frame",
    "info",
    "load",
    "mix_to_mono",
    "pcm_to_float",
    "pcm_to_mono",
    "random_crop",
    "random_crop_starts",
    "resample",
    "seek_crops",
]
