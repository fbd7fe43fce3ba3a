"""The front-end plugins: contract ([B, T] -> float32 [B, F, frames]), agreement, config errors."""
from __future__ import annotations

import pytest
import torch

import musicrep
from musicrep.errors import ConfigError

NAMES = ["mel", "mule-mel", "torch-mel", "nnaudio-mel", "nnaudio-cqt"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("length", [9000, 12345])
def test_contract(rng: torch.Generator, name: str, length: int) -> None:
    frontend = musicrep.get_component("frontend", name)
    wave = torch.randn(2, length, generator=rng)
    out = frontend(wave)
    assert out.dtype == torch.float32
    assert out.shape == (2, frontend.n_features, frontend.frames(length))
    assert torch.isfinite(out).all()
    assert frontend.sample_rate == 16000 and frontend.hop_length > 0


@pytest.mark.parametrize("name", ["mel", "nnaudio-mel"])
@pytest.mark.parametrize("settings", [{}, {"mel_scale": "htk", "norm": None, "log": "db", "n_fft": 512}])
def test_agrees_with_torch_mel(rng: torch.Generator, name: str, settings: dict) -> None:
    wave = torch.randn(3, 9000, generator=rng)
    want = musicrep.get_component("frontend", "torch-mel", **settings)(wave)
    got = musicrep.get_component("frontend", name, **settings)(wave)
    assert (got - want).abs().max() <= 1e-4 * max(want.abs().max().item(), 1.0)


def test_mule_mel_is_mule(rng: torch.Generator) -> None:
    frontend = musicrep.get_component("frontend", "mule-mel")
    c = frontend.config
    assert (c.sample_rate, c.n_fft, c.win_length, c.hop_length, c.n_mels) == (16000, 2048, 400, 160, 96)
    assert (c.f_max, c.mel_scale, c.norm, c.log, c.log_scale) == (8000.0, "htk", 2.0, "log10p", 1e4)
    wave = torch.randn(1, 16000, generator=rng)
    want = musicrep.ops.reference.mel_spectrogram(
        wave.double(), 16000, 2048, 160, 400, 96, f_max=8000.0, mel_scale="htk", norm=2,
        log="log10p", log_scale=1e4).float()
    assert (frontend(wave) - want).abs().max() <= 1e-4 * want.abs().max()


@pytest.mark.parametrize("name, values, key", [
    ("mel", {"n_fft": 100, "win_length": 200}, "win_length"),
    ("mel", {"f_max": 9000.0}, "f_max"),
    ("mel", {"hop_length": 0}, "hop_length"),
    ("mel", {"log": "ln"}, "log"),
    ("mule-mel", {"n_mels": 0}, "n_mels"),
    ("nnaudio-mel", {"norm": 2.0}, "norm"),
    ("nnaudio-mel", {"pad_mode": "replicate"}, "pad_mode"),
    ("nnaudio-cqt", {"n_bins": 200}, "n_bins"),
])
def test_bad_config_names_the_key(name: str, values: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        musicrep.get_component("frontend", name, **values)


@pytest.mark.parametrize("name", ["mel", "torch-mel", "nnaudio-mel", "nnaudio-cqt"])
def test_bad_wave_is_a_value_error(name: str) -> None:
    frontend = musicrep.get_component("frontend", name)
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        frontend(torch.zeros(16000))
    with pytest.raises(ValueError, match="float32 or float64"):
        frontend(torch.zeros(1, 16000, dtype=torch.int32))
    with pytest.raises(ValueError, match="reflect padding|longer than"):
        frontend(torch.zeros(1, 100))
