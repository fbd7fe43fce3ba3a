"""MULE in musicrep against the independent mule-torch port: same weights, same embeddings.

mule-torch is a test dependency only; musicrep never imports it. Its model is built at a
seeded random initialisation with every zero-initialised parameter (the residual gains that
silence each branch at init, biases) set to random values, so that every layer matters.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import musicrep
from musicrep.errors import MusicrepError
from musicrep.load import ReadyModel
from musicrep.plugins.sfnfnet import SFNFNet, StandardizedConv2d

mule_torch = pytest.importorskip("mule_torch")

SR = 16000


def close(ours: torch.Tensor, theirs: torch.Tensor, rel: float = 1e-3) -> None:
    """Equal within ``rel`` of the reference's largest magnitude."""
    assert ours.shape == theirs.shape
    scale = theirs.abs().max().item()
    err = (ours - theirs).abs().max().item()
    assert err <= rel * scale, f"max error {err:.3g} vs scale {scale:.3g}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple["mule_torch.MuleModel", Path]:
    torch.manual_seed(1234)
    model = mule_torch.MuleModel(mule_torch.MuleConfig()).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("skip_gain"):
                p.uniform_(0.5, 1.5)
            elif name.endswith("gain"):
                p.uniform_(0.8, 1.2)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.1)
    folder = tmp_path_factory.mktemp("mule") / "weights"
    model.save_pretrained(folder)
    return model, folder


@pytest.fixture(scope="module")
def ours(reference: tuple) -> ReadyModel:
    return musicrep.load_model("mule", weights=reference[1])


def test_f0_size_and_dim(reference: tuple, ours) -> None:
    encoder = ours.embedder.encoder
    n = sum(p.numel() for p in encoder.parameters())
    assert n == 62_345_742 == sum(p.numel() for p in reference[0].backbone.parameters())
    assert encoder.dim == ours.dim == 1728 and ours.sample_rate == SR
    with torch.inference_mode():
        assert encoder(torch.randn(2, 96, 300)).shape == (2, 1728)


def test_presets_are_smaller_and_take_any_length() -> None:
    sizes = {}
    for preset in ("tiny", "s0"):
        encoder = SFNFNet(SFNFNet.Config(preset=preset)).eval()
        sizes[preset] = sum(p.numel() for p in encoder.parameters())
        with torch.inference_mode():
            for frames in (37, 300, 411):
                out = encoder(torch.randn(3, 96, frames))
                assert out.shape == (3, encoder.dim) and torch.isfinite(out).all()
    assert sizes["tiny"] < sizes["s0"] < 62_345_742 / 10


@pytest.mark.parametrize("seconds", [0.4, 2.2, 3.0, "long"])
def test_timeline_and_track_embedding_match_mule_torch(reference: tuple, ours, seconds) -> None:
    theirs = reference[0]
    gen = torch.Generator().manual_seed(7 if seconds == "long" else int(seconds * 10))
    batch = 2
    if seconds == "long":  # one clip of 10-40 s, a random length that is no multiple of the hop
        seconds, batch = 10 + 30 * torch.rand(1, generator=gen).item(), 1
    wave = 0.3 * torch.randn(batch, int(seconds * SR), generator=gen)
    with torch.inference_mode():  # one reference call: mule-torch standardises 62M weights per call
        expected_timeline = torch.stack(theirs.embed_timeline(wave))
    timeline, offsets = ours.timeline(wave)
    close(timeline, expected_timeline)
    close(ours(wave), expected_timeline.mean(dim=1))  # MuleModel.forward: the timeline's mean
    frames = wave.shape[1] // 160 + 1
    # MULE: window centres every 200 frames after 0, clamped inside the track; 150 frames each side
    starts = [min(c, frames - 150) - 150 for c in range(200, frames, 200)] if frames >= 300 else [0]
    assert timeline.shape == (batch, len(starts), 1728)
    torch.testing.assert_close(offsets, torch.tensor(starts) * 0.01)


def test_track_embedding_and_frontend_match_mule_torch(reference: tuple, ours) -> None:
    wave = 0.3 * torch.randn(2, int(4.5 * SR), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        close(ours.embedder.frontend(wave), reference[0].frontend(wave), rel=1e-5)
        close(ours(wave), reference[0](wave))


def test_eval_caches_standardised_weights_and_refreshes_them() -> None:
    torch.manual_seed(0)
    encoder = SFNFNet(SFNFNet.Config(preset="tiny"))
    with torch.no_grad():
        for block in encoder.modules():
            if hasattr(block, "skip_gain"):
                block.skip_gain.uniform_(0.5, 1.5)
    x = torch.randn(2, 96, 120)
    with torch.no_grad():
        recomputed = encoder.train()(x)  # training mode: standardised on every call
        encoder.eval()
        first = encoder(x)
        conv = encoder.slow.stem[0]
        cached = conv.kernel()
        assert conv.kernel() is cached  # computed once, reused
        torch.testing.assert_close(first, recomputed, rtol=0, atol=0)
        torch.testing.assert_close(cached, conv.standardized_weight(), rtol=0, atol=0)
        with torch.inference_mode():
            torch.testing.assert_close(encoder(x), recomputed, rtol=0, atol=0)
        conv.weight.mul_(1.5).add_(0.1)  # weights change: the cache must follow
        changed = encoder(x)
        assert conv.kernel() is not cached
        torch.testing.assert_close(changed, encoder.train()(x), rtol=0, atol=0)
    encoder.eval()
    gradient = torch.autograd.grad(encoder(x).sum(), conv.weight)[0]  # eval + grad: no stale cache
    assert gradient.abs().sum() > 0


def test_bf16_is_close_and_float32(ours) -> None:
    wave = 0.3 * torch.randn(2, 7 * SR, generator=torch.Generator().manual_seed(torch.seed() % 2**31))
    half = ReadyModel(ours.embedder, precision="bf16")
    out = half(wave)
    assert out.dtype == torch.float32
    close(out, ours(wave), rel=0.1)
    # every window's embedding points where the float32 one does (the bound: cosine >= 0.999)
    windows_bf16, windows_fp32 = half.timeline(wave)[0], ours.timeline(wave)[0]
    cosine = torch.nn.functional.cosine_similarity(windows_bf16, windows_fp32, dim=-1)
    assert cosine.min() >= 0.999, cosine.min()


# -- bad weights fail at load time, naming the file and the tensor -------------------------------

def copy_weights(reference: tuple, tmp_path: Path, edit=None, config_edit=None) -> Path:
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "edited"
    folder.mkdir()
    tensors = load_file(str(reference[1] / "model.safetensors"))
    if edit:
        tensors = edit(tensors)
    save_file(tensors, str(folder / "model.safetensors"))
    config = json.loads((reference[1] / "config.json").read_text())
    if config_edit:
        config_edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("missing", ["model.safetensors", "config.json"])
def test_missing_file_is_named(reference: tuple, tmp_path: Path, missing: str) -> None:
    folder = copy_weights(reference, tmp_path)
    (folder / missing).unlink()
    with pytest.raises(MusicrepError, match=missing):
        musicrep.load_model("mule", weights=folder)


def test_another_filter_bank_is_refused(reference: tuple, tmp_path: Path) -> None:
    def perturb(tensors):
        tensors["frontend.mel_fb"] = (tensors["frontend.mel_fb"] * 1.1).contiguous()
        return tensors

    folder = copy_weights(reference, tmp_path, edit=perturb)
    with pytest.raises(MusicrepError, match=r"'frontend.mel_fb' is not MULE's mel filter bank"):
        musicrep.load_model("mule", weights=folder)


def test_wrong_shape_names_the_tensor(reference: tuple, tmp_path: Path) -> None:
    name = "backbone.slow_stages.2.blocks.3.convs.1.weight"

    def shrink(tensors):
        tensors[name] = tensors[name][:, :, :, :2].contiguous()
        return tensors

    folder = copy_weights(reference, tmp_path, edit=shrink)
    with pytest.raises(MusicrepError, match=rf"model\.safetensors.*'{name}' has shape"):
        musicrep.load_model("mule", weights=folder)


def test_other_architecture_is_refused(reference: tuple, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in torch.nn.Linear(4, 2).state_dict().items()}, str(other))
    with pytest.raises(MusicrepError, match=r"other\.safetensors: tensor 'backbone\.slow_stem\.convs\.0\.weight' "
                                            "is missing"):
        musicrep.load_model("mule", weights=other)
    folder = copy_weights(reference, tmp_path, config_edit=lambda c: c.update(n_mels=128))
    with pytest.raises(MusicrepError, match=r"config\.json.*'n_mels' is 128"):
        musicrep.load_model("mule", weights=folder)


def test_checkpoint_names_map_both_ways(reference: tuple, ours) -> None:
    from musicrep.plugins.mule import mule_key, translate_key

    theirs = [k for k in reference[0].state_dict() if translate_key(k) is not None]
    mapped = {translate_key(k) for k in theirs}
    # the filter bank is checked against MULE's, not loaded: the compiled front end makes its own
    assert mapped == set(ours.embedder.state_dict()) | {"frontend.filters"}
    assert all(mule_key(translate_key(k)) == k for k in theirs)


def test_nonexistent_weights_and_names(tmp_path: Path) -> None:
    with pytest.raises(MusicrepError, match="no such file"):
        musicrep.load_model("mule", weights=tmp_path / "nowhere")
    with pytest.raises(MusicrepError, match="neither a known model"):
        musicrep.load_model("no-such-model")
    with pytest.raises(ValueError, match="precision"):
        musicrep.load_model("mule", precision="fp8")


def test_standardized_conv_pads_like_tensorflow() -> None:
    """TF 'same': output ceil(n / stride); the odd extra pad goes after, as in the slow stem."""
    conv = StandardizedConv2d(1, 1, (3, 1), stride=(2, 8)).eval()
    x = torch.randn(1, 1, 96, 300)
    with torch.no_grad():
        out = conv(x)
        manual = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (0, 0, 0, 1)), conv.kernel(), conv.bias,
                                            (2, 8))
    assert out.shape == (1, 1, 48, 38)
    torch.testing.assert_close(out, manual)


def test_tiny_trains_every_parameter() -> None:
    """At init the zero skip gains silence every branch, yet each gain gets a gradient, and
    once they move every parameter does."""
    torch.manual_seed(0)
    encoder = SFNFNet(SFNFNet.Config(preset="tiny")).train()
    x = torch.randn(3, 64, 90)
    encoder(x).pow(2).mean().backward()
    gains = [m.skip_gain for m in encoder.modules() if hasattr(m, "skip_gain")]
    assert all(g.grad is not None and g.grad.abs().item() > 0 for g in gains)
    encoder.zero_grad()
    with torch.no_grad():
        for g in gains:
            g.fill_(0.5)
    encoder(x).pow(2).mean().backward()
    silent = [n for n, p in encoder.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not silent, silent
