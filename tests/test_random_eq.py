"""random-eq: a smooth gain curve over frequency, the same in every frame; pitch stays put."""
from __future__ import annotations

import pytest
import torch

import musicrep
from musicrep.errors import ConfigError


def test_random_eq_adds_one_smooth_curve_per_item(rng: torch.Generator) -> None:
    depth, n_terms = float(torch.rand((), generator=rng)) + 0.5, 3
    eq = musicrep.get_component("augmentation", "random-eq", depth=depth, n_terms=n_terms, p=0.5)
    x = torch.randn(16, 96, 40, generator=rng)
    seed = int(torch.randint(0, 2**31, (), generator=rng))
    y = eq(x, torch.Generator().manual_seed(seed))
    torch.testing.assert_close(y, eq(x, torch.Generator().manual_seed(seed)))   # a function of the generator
    gain = y - x
    torch.testing.assert_close(gain, gain[:, :, :1].expand_as(gain), rtol=0, atol=1e-5)  # every frame alike
    curve = gain[:, :, 0]
    touched = curve.abs().amax(dim=1) > 0
    assert 0 < int(touched.sum()) < 16                     # p = 0.5 over 16 items (fails 2 in 2**15 runs)
    assert curve.abs().max() <= depth * n_terms + 1e-5
    # smooth: a few half-cosines change little from one bin to the next
    assert (curve.diff(dim=1).abs().amax(dim=1) <= depth * n_terms * 3.15 * n_terms / 96 + 1e-5).all()


def test_random_eq_keeps_the_peak_of_a_partial_in_its_bin(rng: torch.Generator) -> None:
    """A narrow spectral peak (one partial) stays the loudest bin near it: pitch survives."""
    eq = musicrep.get_component("augmentation", "random-eq", p=1.0)
    peak = int(torch.randint(10, 118, (), generator=rng))
    x = torch.zeros(8, 128, 5)
    x[:, peak] = 10.0
    y = eq(x, torch.Generator().manual_seed(int(torch.randint(0, 2**31, (), generator=rng))))
    window = y[:, peak - 3:peak + 4, 0]
    assert (window.argmax(dim=1) == 3).all()


def test_random_eq_on_the_input_device_and_checked() -> None:
    device = "cpu"
    eq = musicrep.get_component("augmentation", "random-eq")
    assert eq(torch.randn(2, 16, 8, device=device), torch.Generator(device=device)).device.type == device
    for key, value in (("depth", -1.0), ("n_terms", 0), ("p", 1.5)):
        with pytest.raises(ConfigError, match=key):
            musicrep.get_component("augmentation", "random-eq", **{key: value})
