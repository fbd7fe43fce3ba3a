"""Built-in augmentations: applied to a batch on its device, each item drawn from one generator.

Wave domain (``[B, T]``): ``gain``, ``polarity``, ``noise``, ``mix``, ``pitch-shift``.
Spectrogram domain (``[B, F, frames]``): ``time-mask``, ``freq-mask``, ``random-eq``.
The contract and ``Chain`` live in ``musicrep.augment``.
"""
from __future__ import annotations

from musicrep.hookspecs import Factories, hookimpl
from musicrep.plugins.augmentations.eq import RandomEQ
from musicrep.plugins.augmentations.level import Gain, Polarity
from musicrep.plugins.augmentations.masking import FreqMask, TimeMask
from musicrep.plugins.augmentations.mix import Mix
from musicrep.plugins.augmentations.noise import Noise
from musicrep.plugins.augmentations.pitch import PitchShift


@hookimpl
def musicrep_augmentations() -> Factories:
    return {
        "gain": Gain,
        "polarity": Polarity,
        "noise": Noise,
        "mix": Mix,
        "time-mask": TimeMask,
        "freq-mask": FreqMask,
        "pitch-shift": PitchShift,
        "random-eq": RandomEQ,
    }
