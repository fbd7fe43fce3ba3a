"""The augmentation plugins: drawn parameters follow their distributions, outputs follow the
parameters, seeds reproduce, and bad configs name their key.

Statistical checks use bounds with a false-alarm rate around one in a million per test, so a
fresh seed each run (the ``rng`` fixture) is safe.
"""
from __future__ import annotations

import math

import pytest
import torch

import musicrep
from musicrep.augment import Chain, check_generator

NAMES = ("gain", "polarity", "noise", "mix", "time-mask", "freq-mask", "pitch-shift", "random-eq")
SPEC = {"time-mask", "freq-mask", "random-eq"}


def aug(name: str, **config):
    return musicrep.get_component("augmentation", name, **config)


def batch_for(name: str, rng: torch.Generator, dtype: torch.dtype = torch.float32, batch: int = 6):
    shape = (batch, 16, 40) if name in SPEC else (batch, 800)
    return torch.randn(shape, generator=rng, dtype=dtype)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def binomial_ok(count: int, n: int, p: float) -> bool:
    """``count`` successes of ``n`` is within 5 standard deviations of ``n * p``."""
    return abs(count - n * p) <= 5 * math.sqrt(n * p * (1 - p)) + 1


def ks_uniform_ok(samples: torch.Tensor, low: float, high: float) -> bool:
    """Kolmogorov-Smirnov distance to U(low, high) below its critical value at alpha = 1e-6."""
    n = samples.numel()
    cdf = ((samples.double().sort().values - low) / (high - low)).clamp(0, 1)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    distance = torch.maximum(i / n - cdf, cdf - (i - 1) / n).max().item()
    return distance < math.sqrt(-math.log(1e-6 / 2) / (2 * n))


def test_every_augmentation_is_registered_with_a_domain() -> None:
    found = musicrep.list_components("augmentation")
    assert set(NAMES) <= set(found)
    for name in NAMES:
        assert found[name].summary
        assert aug(name).domain == ("spec" if name in SPEC else "wave")


# -- gain and polarity -------------------------------------------------------------------------

def test_gain_is_uniform_in_decibels(rng: torch.Generator) -> None:
    x = torch.full((20000, 4), 0.5)
    gain = aug("gain", min_db=-12.0, max_db=3.0, p=1.0)
    params = gain.sample_params(x, rng)
    out = gain.apply(x, params)
    measured_db = 20 * torch.log10(out[:, 0] / 0.5)
    torch.testing.assert_close(measured_db, params["gain_db"], rtol=0, atol=1e-4)
    assert torch.equal(out, out[:, :1].expand_as(out))  # one gain per item
    assert ks_uniform_ok(measured_db, -12.0, 3.0)
    assert not ks_uniform_ok(measured_db, -12.0, 4.0)  # the test has power: a wrong range fails


def test_gain_applies_with_probability_p(rng: torch.Generator) -> None:
    x = torch.ones(20000, 2)
    gain = aug("gain", min_db=-6.0, max_db=-1.0, p=0.3)
    params = gain.sample_params(x, rng)
    out = gain.apply(x, params)
    changed = (out[:, 0] != 1.0)
    assert torch.equal(changed, params["apply"])
    assert binomial_ok(int(changed.sum()), 20000, 0.3)


def test_polarity_flips_with_probability_p(rng: torch.Generator) -> None:
    x = torch.randn(20000, 8, generator=rng)
    polarity = aug("polarity", p=0.3)
    params = polarity.sample_params(x, rng)
    out = polarity.apply(x, params)
    flipped = (out == -x).all(dim=1)
    assert torch.equal(flipped, params["apply"])
    assert torch.equal(out[~flipped], x[~flipped])
    assert binomial_ok(int(flipped.sum()), 20000, 0.3)


# -- noise and mix -----------------------------------------------------------------------------

def test_noise_reaches_the_drawn_snr(rng: torch.Generator) -> None:
    # items of very different levels: the SNR must be relative to each item's own power
    x = torch.randn(64, 4000, generator=rng) * torch.logspace(-3, 1, 64)[:, None]
    noise = aug("noise", min_snr_db=0.0, max_snr_db=30.0, p=1.0)
    params = noise.sample_params(x, rng)
    out = noise.apply(x, params, rng)
    added = out.double() - x.double()
    snr = 10 * torch.log10(x.double().pow(2).mean(1) / added.pow(2).mean(1))
    # exact by construction (the noise is scaled by its realised power), so far inside +-0.5 dB
    assert (snr - params["snr_db"].double()).abs().max() < 0.01
    assert ks_uniform_ok(params["snr_db"], 0.0, 30.0)
    # white: the noise is uncorrelated from one sample to the next
    # (per item, then averaged: a pooled estimate would be dominated by the loudest few items)
    lag1 = ((added[:, 1:] * added[:, :-1]).mean(1) / added.pow(2).mean(1)).mean()
    assert abs(lag1.item()) < 0.02


def test_noise_leaves_untouched_and_silent_items_alone(rng: torch.Generator) -> None:
    x = torch.randn(400, 100, generator=rng)
    x[0] = 0.0
    noise = aug("noise", p=0.5)
    params = noise.sample_params(x, rng)
    out = noise.apply(x, params, rng)
    assert torch.equal(out[~params["apply"]], x[~params["apply"]])
    assert torch.equal(out[0], x[0])
    assert binomial_ok(int(params["apply"].sum()), 400, 0.5)


def test_mix_adds_another_item_at_the_drawn_level(rng: torch.Generator) -> None:
    levels = torch.rand(32, 1, generator=rng, dtype=torch.float64)
    x = torch.randn(32, 2000, generator=rng, dtype=torch.float64) * levels
    mix = aug("mix", min_snr_db=3.0, max_snr_db=12.0, p=1.0)
    params = mix.sample_params(x, rng)
    out = mix.apply(x, params)
    assert out.shape == x.shape
    partner = params["partner"]
    assert (partner != torch.arange(32)).all()
    added = out - x
    partner_wave = x[partner]
    weight = (added * partner_wave).sum(1) / partner_wave.pow(2).sum(1)
    torch.testing.assert_close(added, weight[:, None] * partner_wave, rtol=0, atol=1e-6)
    snr = 10 * torch.log10(x.pow(2).mean(1) / added.pow(2).mean(1))
    torch.testing.assert_close(snr.float(), params["snr_db"], rtol=0, atol=1e-3)


def test_mix_partners_are_the_other_items_evenly(rng: torch.Generator) -> None:
    mix = aug("mix", p=1.0)
    x = torch.zeros(3, 4)
    offsets = torch.stack([(mix.sample_params(x, rng)["partner"] - torch.arange(3)) % 3 for _ in range(500)])
    assert set(offsets.unique().tolist()) == {1, 2}
    assert binomial_ok(int((offsets == 1).sum()), 1500, 0.5)


def test_mix_of_one_item_is_identity(rng: torch.Generator) -> None:
    x = torch.randn(1, 50, generator=rng)
    assert torch.equal(aug("mix", p=1.0)(x, rng), x)


# -- masks -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, dim", [("time-mask", 2), ("freq-mask", 1)])
def test_masks_have_widths_in_bounds_and_hold_the_value(rng: torch.Generator, name: str, dim: int) -> None:
    x = torch.randn(400, 20, 30, generator=rng)
    size = x.shape[dim]
    masker = aug(name, min_width=2, max_width=7, n_masks=2, value=-3.5, p=1.0)
    params = masker.sample_params(x, rng)
    out = masker.apply(x, params)
    width, start = params["width"], params["start"]
    assert width.min() >= 2 and width.max() <= 7
    assert set(width.unique().tolist()) == set(range(2, 8))  # both bounds are reached
    assert start.min() >= 0 and (start + width).max() <= size
    for b in range(0, 400, 37):
        covered = torch.zeros(size, dtype=torch.bool)
        for s, w in zip(start[b].tolist(), width[b].tolist()):
            covered[s:s + w] = True
        item, orig = out[b].movedim(dim - 1, 0), x[b].movedim(dim - 1, 0)
        assert (item[covered] == -3.5).all()
        assert torch.equal(item[~covered], orig[~covered])


def test_mask_default_fill_is_the_item_mean_and_width_caps_at_the_axis(rng: torch.Generator) -> None:
    x = torch.randn(50, 6, 10, generator=rng) + torch.arange(50.0)[:, None, None]
    masker = aug("freq-mask", min_width=3, max_width=100, p=1.0)
    params = masker.sample_params(x, rng)
    assert params["width"].max() <= 6
    out = masker.apply(x, params)
    hit = masker.mask(x, params).expand_as(x)
    fill = x.mean(dim=(1, 2), keepdim=True).expand_as(x)
    assert torch.equal(out[hit], fill[hit])


def test_masks_apply_with_probability_p(rng: torch.Generator) -> None:
    x = torch.randn(4000, 4, 8, generator=rng)
    masker = aug("time-mask", min_width=1, max_width=3, value=100.0, p=0.25)
    out = masker(x, rng)
    touched = (out == 100.0).flatten(1).any(1)
    assert binomial_ok(int(touched.sum()), 4000, 0.25)


# -- pitch shift -------------------------------------------------------------------------------

def peak_hz(wave: torch.Tensor, sample_rate: float) -> float:
    """The strongest frequency, from a 4x zero-padded Hann-windowed FFT and a parabolic fit."""
    n = wave.shape[-1]
    spectrum = torch.fft.rfft(wave * torch.hann_window(n, dtype=wave.dtype), n=4 * n).abs()
    k = int(spectrum.argmax())
    a, b, c = spectrum[k - 1].log(), spectrum[k].log(), spectrum[k + 1].log()
    return (k + 0.5 * float((a - c) / (a - 2 * b + c))) * sample_rate / (4 * n)


def test_pitch_shift_moves_a_sine_by_the_drawn_semitones(rng: torch.Generator) -> None:
    sample_rate, f0 = 16000, 440.0
    t = torch.arange(16000, dtype=torch.float64) / sample_rate
    x = torch.sin(2 * math.pi * f0 * t).repeat(6, 1)
    shifter = aug("pitch-shift", min_semitones=-4.0, max_semitones=4.0, p=1.0)
    params = shifter.sample_params(x, rng)
    out = shifter.apply(x, params)
    for b in range(6):
        expected = f0 * 2 ** (params["semitones"][b].item() / 12)
        core = out[b, 2000:14000]  # clear of the padded ends
        assert peak_hz(core, sample_rate) == pytest.approx(expected, rel=1e-4)


def test_pitch_shift_copies_unchosen_items_exactly(rng: torch.Generator) -> None:
    x = torch.randn(40, 300, generator=rng)
    shifter = aug("pitch-shift", p=0.5)
    params = shifter.sample_params(x, rng)
    out = shifter.apply(x, params)
    keep = ~params["apply"]
    assert torch.equal(out[keep], x[keep])
    assert not torch.allclose(out[~keep], x[~keep])


# -- every augmentation ------------------------------------------------------------------------

def full_config(name: str) -> dict:
    return {} if name == "polarity" else {"p": 1.0}


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_output_other_seed_other_output(name: str) -> None:
    x = batch_for(name, seeded(0), batch=32)
    a = aug(name, **full_config(name))
    first, again, other = a(x, seeded(7)), a(x, seeded(7)), a(x, seeded(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert not torch.equal(first, x)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_output_keeps_shape_device_and_dtype(rng: torch.Generator, name: str, dtype: torch.dtype) -> None:
    x = batch_for(name, rng, dtype)
    out = aug(name, **full_config(name))(x, rng)
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device


@pytest.mark.cuda
@pytest.mark.parametrize("name", NAMES)
def test_cuda_batches_stay_on_cuda_and_reproduce(name: str) -> None:
    x = batch_for(name, seeded(0)).cuda()
    a = aug(name, **full_config(name))
    gen = lambda: torch.Generator(device="cuda").manual_seed(3)  # noqa: E731
    out = a(x, gen())
    assert out.device == x.device and out.dtype == x.dtype
    assert torch.equal(out, a(x, gen()))


@pytest.mark.parametrize("name", NAMES)
def test_input_of_the_wrong_rank_is_refused(name: str) -> None:
    wrong = torch.zeros(2, 10) if name in SPEC else torch.zeros(2, 3, 10)
    with pytest.raises(ValueError, match="x must be a"):
        aug(name)(wrong)


def test_generator_on_another_device_is_refused() -> None:
    with pytest.raises(ValueError, match="generator is on cpu"):
        check_generator(torch.Generator(), torch.device("cuda"))


@pytest.mark.parametrize("name, values, key", [
    *[(name, {"p": -0.1}, "p") for name in NAMES],
    *[(name, {"p": 1.5}, "p") for name in NAMES],
    ("gain", {"min_db": 3.0, "max_db": -3.0}, "min_db"),
    ("gain", {"max_db": float("inf")}, "max_db"),
    ("noise", {"min_snr_db": 40.0, "max_snr_db": 10.0}, "min_snr_db"),
    ("mix", {"min_snr_db": 20.0, "max_snr_db": 10.0}, "min_snr_db"),
    ("pitch-shift", {"min_semitones": 3.0, "max_semitones": 1.0}, "min_semitones"),
    ("pitch-shift", {"max_semitones": 60.0}, "max_semitones"),
    ("pitch-shift", {"zeros": 0}, "zeros"),
    ("time-mask", {"min_width": 5, "max_width": 2}, "max_width"),
    ("freq-mask", {"min_width": -1}, "min_width"),
    ("freq-mask", {"n_masks": 0}, "n_masks"),
    ("time-mask", {"value": float("nan")}, "value"),
])
def test_bad_config_names_the_key(name: str, values: dict, key: str) -> None:
    with pytest.raises(musicrep.ConfigError, match=f"key '{key}'"):
        aug(name, **values)


# -- Chain -------------------------------------------------------------------------------------

def test_chain_runs_wave_frontend_spec_from_one_generator(rng: torch.Generator) -> None:
    chain = Chain([aug("gain", p=1.0), aug("noise", p=1.0), aug("time-mask", max_width=5, p=1.0)])
    assert [a.domain for a in chain.wave] == ["wave", "wave"]
    assert [a.domain for a in chain.spec] == ["spec"]
    x = torch.randn(4, 256, generator=rng)
    frontend = lambda w: w.reshape(4, 16, 16).abs()  # noqa: E731
    got = chain(x, frontend, seeded(5))
    g = seeded(5)
    want = chain.spec[0](frontend(chain.wave[1](chain.wave[0](x, g), g)), g)
    assert torch.equal(got, want)


def test_chain_refuses_wave_after_spec() -> None:
    with pytest.raises(ValueError, match="list wave augmentations first"):
        Chain([aug("freq-mask"), aug("gain")])
