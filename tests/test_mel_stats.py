"""mel-stats' chroma option: a pitch-class profile read off the mel bands of real front ends."""
from __future__ import annotations

import math

import pytest
import torch

import musicrep
from musicrep.errors import ConfigError


@pytest.mark.parametrize("n_mels, n_fft, mel_scale", [(128, 2048, "slaney"), (96, 2048, "htk")])
def test_chroma_finds_the_pitch_class_of_a_tone(n_mels: int, n_fft: int, mel_scale: str,
                                                rng: torch.Generator) -> None:
    frontend = musicrep.get_component("frontend", "mel", n_mels=n_mels, n_fft=n_fft, mel_scale=mel_scale)
    encoder = musicrep.get_component("encoder", "mel-stats", n_features=n_mels, n_mfcc=0, chroma=True,
                                     mel_scale=mel_scale)
    assert encoder.dim == 2 * (n_mels + 12)
    t = torch.arange(16000) / 16000
    for _ in range(4):
        midi = int(torch.randint(57, 90, (), generator=rng))     # A3 .. F6
        f0 = 440.0 * 2 ** ((midi - 69) / 12)
        phase = float(torch.rand((), generator=rng)) * 2 * math.pi
        tone = sum(0.5 ** k * torch.sin(2 * math.pi * f0 * (k + 1) * t + phase) for k in range(3))
        out = encoder(frontend(tone[None].float()))
        chroma_mean = out[0, n_mels:n_mels + 12]
        assert int(chroma_mean.argmax()) == midi % 12, (midi, chroma_mean)


def test_chroma_is_a_profile_not_a_level(rng: torch.Generator) -> None:
    """Chroma frames are centred over the 12 classes: adding a constant to every band changes
    the mel means but no chroma value."""
    encoder = musicrep.get_component("encoder", "mel-stats", n_features=64, n_mfcc=5, chroma=True)
    x = torch.randn(2, 64, 30, generator=rng)
    a, b = encoder(x), encoder(x + 3.0)
    chroma = slice(64 + 5, 64 + 5 + 12)
    torch.testing.assert_close(a[:, chroma], b[:, chroma], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a[:, chroma].sum(dim=1), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(b[:, :64] - a[:, :64], torch.full((2, 64), 3.0))


def test_chroma_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="f_max"):
        musicrep.get_component("encoder", "mel-stats", chroma=True, f_max=9000.0)
    without = musicrep.get_component("encoder", "mel-stats", n_features=40, n_mfcc=13)
    assert without.dim == 2 * (40 + 13)
