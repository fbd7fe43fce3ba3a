"""Built-in encoders: any clip length in, [B, dim] out, gradients flow."""
from __future__ import annotations

import pytest
import torch

import musicrep


@pytest.mark.parametrize("name, config", [("fcn", {"channels": [4, 8], "dim": 24}),
                                          ("resnet", {"channels": [4, 8], "blocks": [1, 1], "dim": 12}),
                                          ("mel-stats", {"n_features": 40, "n_mfcc": 13})])
def test_encoders_map_any_length_to_their_dim(name: str, config: dict, rng: torch.Generator) -> None:
    encoder = musicrep.get_component("encoder", name, **config)
    for frames in (1, 7, int(torch.randint(20, 200, (), generator=rng))):
        x = torch.randn(3, 40, frames, generator=rng, requires_grad=True)
        out = encoder(x)
        assert out.shape == (3, encoder.dim) and torch.isfinite(out).all()
        out.square().sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()


def test_mel_stats_is_mean_and_std_of_features_and_mfccs(rng: torch.Generator) -> None:
    encoder = musicrep.get_component("encoder", "mel-stats", n_features=16, n_mfcc=4)
    x = torch.randn(2, 16, 50, generator=rng)
    out = encoder(x)
    torch.testing.assert_close(out[:, :16], x.mean(dim=2))
    torch.testing.assert_close(out[:, 20:36], x.std(dim=2, unbiased=False))
    # the first MFCC of an orthonormal DCT-II is sqrt(1/F) times the sum over bands
    torch.testing.assert_close(out[:, 16], (x.sum(dim=1) / 4.0).mean(dim=1), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="n_features=16"):
        encoder(torch.randn(1, 8, 10))
