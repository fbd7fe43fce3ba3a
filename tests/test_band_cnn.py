"""The band-cnn encoder: any clip length to [B, dim], gradients, devices, and it sees where a
pattern sits in frequency (which fcn, pooling both axes, cannot)."""
from __future__ import annotations

import pytest
import torch

import musicrep
from musicrep.errors import ConfigError


def small(**overrides) -> torch.nn.Module:
    config = dict(channels=[4, 8, 8], freq_pool=[1, 2, 2], time_pool=[2, 2, 2], bands=6, dim=24)
    return musicrep.get_component("encoder", "band-cnn", **{**config, **overrides})


def test_band_cnn_maps_any_length_and_height_to_its_dim(rng: torch.Generator) -> None:
    encoder = small()
    for bands, frames in ((40, 1), (13, 7), (int(torch.randint(20, 130, (), generator=rng)),
                                            int(torch.randint(20, 200, (), generator=rng)))):
        x = torch.randn(3, bands, frames, generator=rng, requires_grad=True)
        out = encoder(x)
        assert out.shape == (3, encoder.dim) and torch.isfinite(out).all()
        out.square().sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
        assert all(p.grad is not None for p in encoder.parameters() if p.requires_grad)
        encoder.zero_grad()


def test_band_cnn_tells_frequency_positions_apart_where_fcn_cannot(rng: torch.Generator) -> None:
    """The same random patch at two heights a multiple of fcn's total pooling apart: fcn's global
    pooling maps both to one embedding, band-cnn keeps them apart."""
    torch.manual_seed(int(torch.randint(0, 2**31, (), generator=rng)))
    fcn = musicrep.get_component("encoder", "fcn", channels=[4, 8], dim=16).eval()   # pools 4x in frequency
    bands = small().eval()
    patch = torch.rand(1, 6, 20, generator=rng) + 0.5
    low, high = torch.zeros(1, 64, 20), torch.zeros(1, 64, 20)
    low[:, 12:18], high[:, 40:46] = patch, patch                 # 28 bands apart: 7 x fcn's pooling
    with torch.no_grad():
        torch.testing.assert_close(fcn(low), fcn(high))
        gap = (bands(low) - bands(high)).abs().max()
        assert gap > 1e-3 * bands(low).abs().max(), gap


def test_band_cnn_runs_where_its_input_is() -> None:
    device = "cpu"
    encoder = small().to(device)
    out = encoder(torch.randn(2, 32, 50, device=device))
    assert out.device.type == device


@pytest.mark.cuda
def test_band_cnn_on_cuda_matches_cpu(rng: torch.Generator) -> None:
    encoder = small().eval()
    x = torch.randn(2, 48, 90, generator=rng)
    with torch.no_grad():
        expected = encoder(x)
        got = encoder.to("cuda")(x.to("cuda"))
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("key, value", [("freq_pool", [1, 2]), ("time_pool", [2, 0, 2]), ("bands", 0),
                                        ("channels", []), ("dim", -1), ("dropout", 1.0)])
def test_band_cnn_refuses_bad_options_naming_the_key(key: str, value) -> None:
    with pytest.raises(ConfigError, match=key):
        small(**{key: value})
