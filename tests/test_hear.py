"""HEAR both ways: musicrep models exported as a HEAR-API module (``musicrep.hear``), and any
HEAR module wrapped as a musicrep encoder (``hear`` + the ``waveform`` front end)."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import musicrep
import musicrep.hear as hear
from musicrep.errors import ConfigError
from musicrep.model import Embedder

from pipeline_fakes import synth_pitch_task

SR = 8000

TINY_HEAR = '''
"""A tiny HEAR-API module: framewise RMS, zero-crossing rate and spectral centroid."""
import torch
from torch import nn

FRAME = 200


class Model(nn.Module):
    sample_rate = 8000
    scene_embedding_size = 3
    timestamp_embedding_size = 3

    def __init__(self, gain):
        super().__init__()
        self.register_buffer("gain", torch.tensor(gain))


def load_model(model_file_path=""):
    return Model(float(open(model_file_path).read()) if model_file_path else 1.0)


def get_timestamp_embeddings(audio, model):
    n = audio.shape[1] // FRAME
    frames = audio[:, : n * FRAME].reshape(len(audio), n, FRAME)
    rms = frames.pow(2).mean(-1).sqrt()
    zcr = (frames[..., 1:].sign() != frames[..., :-1].sign()).float().mean(-1)
    spectrum = torch.fft.rfft(frames).abs()
    bins = torch.arange(spectrum.shape[-1], dtype=audio.dtype, device=audio.device)
    centroid = (spectrum * bins).sum(-1) / spectrum.sum(-1).clamp_min(1e-9) / spectrum.shape[-1]
    stamps = (torch.arange(n, device=audio.device) * FRAME + FRAME / 2) / model.sample_rate * 1000
    return model.gain * torch.stack([rms, zcr, centroid], -1), stamps.expand(len(audio), -1)


def get_scene_embeddings(audio, model):
    return get_timestamp_embeddings(audio, model)[0].mean(1)
'''


@pytest.fixture
def tiny_hear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The tiny HEAR module, importable as ``tiny_hear_mod``, and a weights file for it."""
    (tmp_path / "tiny_hear_mod.py").write_text(TINY_HEAR)
    (tmp_path / "gain.txt").write_text("2.5")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("tiny_hear_mod", None)


def write_run(run_dir: Path, seed: int) -> Embedder:
    """A 'pre-trained' musicrep model as the pretrain stage saves it."""
    torch.manual_seed(seed)
    frontend_config = {"sample_rate": SR, "n_fft": 256, "hop_length": 64, "n_mels": 16}
    encoder_config = {"channels": [4, 8], "dim": 8}
    embedder = Embedder(musicrep.get_component("frontend", "mel", **frontend_config),
                        musicrep.get_component("encoder", "fcn", **encoder_config),
                        window=0.5, hop=0.25, pooling="mean+std")
    with torch.no_grad():
        for p in embedder.parameters():
            p.add_(0.1 * torch.randn_like(p))
    out = run_dir / "models" / "mine"
    out.mkdir(parents=True)
    description = {"frontend": {"type": "mel", **frontend_config}, "encoder": {"type": "fcn", **encoder_config}}
    torch.save({"key": "k", "embedder": embedder.state_dict(), "description": description, "summary": {}},
               out / "final.pt")
    (run_dir / "pipeline.toml").write_text('[embed]\nwindow = 0.5\nhop = 0.25\npooling = "mean+std"\n')
    return embedder.eval()


def audio(n: int, seconds: float, rng: torch.Generator) -> torch.Tensor:
    return 0.3 * torch.randn(n, round(seconds * SR), generator=rng)


# -- a HEAR module as a musicrep encoder ----------------------------------------------------------

def test_hear_encoder_embeds_each_window_with_the_module(tiny_hear: Path, rng: torch.Generator) -> None:
    import tiny_hear_mod

    encoder = musicrep.get_component("encoder", "hear", module="tiny_hear_mod",
                                     model_file=str(tiny_hear / "gain.txt"))
    assert encoder.dim == 3 and encoder.sample_rate == SR
    embedder = Embedder(musicrep.get_component("frontend", "waveform", sample_rate=SR), encoder,
                        window=0.5, hop=0.25).eval()
    wave = audio(2, 1.0, rng)
    with torch.no_grad():
        got = embedder(wave)
    module_model = tiny_hear_mod.load_model(str(tiny_hear / "gain.txt"))
    starts = range(0, SR - 4000 + 1, 2000)
    expected = torch.stack([tiny_hear_mod.get_scene_embeddings(wave[:, s:s + 4000], module_model)
                            for s in starts]).mean(0)
    assert got.shape == (2, 3)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_hear_encoder_in_a_pipeline(tiny_hear: Path) -> None:
    from musicrep.pipeline.runner import run_pipeline

    toml = tiny_hear / "pipeline.toml"
    toml.write_text(textwrap.dedent("""
        [run]
        name = "hear"
        device = "cpu"
        """) + synth_pitch_task(1.0, sample_rate=SR) + textwrap.dedent(f"""
        [models.tiny]
        frontend = {{ type = "waveform", sample_rate = {SR} }}
        encoder = {{ type = "hear", module = "tiny_hear_mod", model_file = "gain.txt" }}
        [embed]
        window = 0.5
        hop = 0.25
        """))
    run_pipeline(toml)  # model_file is relative to the TOML
    import json

    rows = json.loads((tiny_hear / "runs" / "hear" / "results.json").read_text())
    assert any(r["model"] == "tiny" and np.isfinite(r["value"]) for r in rows)


def test_hear_encoder_config_and_rate_errors(tiny_hear: Path) -> None:
    with pytest.raises(ConfigError, match="key 'module'.*cannot import HEAR module 'no_such_hear'"):
        musicrep.get_component("encoder", "hear", module="no_such_hear")
    with pytest.raises(ConfigError, match="key 'module'.*not a HEAR-API module: it lacks load_model"):
        musicrep.get_component("encoder", "hear", module="json")
    with pytest.raises(ConfigError, match="key 'module'.*dotted module name"):
        musicrep.get_component("encoder", "hear", module="not a module")
    encoder = musicrep.get_component("encoder", "hear", module="tiny_hear_mod")
    with pytest.raises(ConfigError, match="takes audio at 8000 Hz but the front end gives 16000 Hz"):
        Embedder(musicrep.get_component("frontend", "waveform", sample_rate=16000), encoder)
    with pytest.raises(ValueError, match=r"raw audio windows \[B, 1, samples\]"):
        encoder(torch.zeros(2, 16, 100))


# -- a musicrep model as a HEAR module ------------------------------------------------------------

def test_export_has_the_hear_attributes_and_scene_embeddings(tmp_path: Path, rng: torch.Generator) -> None:
    original = write_run(tmp_path / "run", seed=1)
    model = hear.load_model(str(tmp_path / "run"))
    assert isinstance(model, torch.nn.Module)
    assert (model.sample_rate, model.scene_embedding_size, model.timestamp_embedding_size) == (SR, 16, 8)
    wave = audio(3, 1.3, rng)
    scene = hear.get_scene_embeddings(wave, model)
    assert scene.shape == (3, 16) and scene.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(scene, original(wave), rtol=1e-5, atol=1e-5)


def test_timestamp_embeddings_are_centred_windows_every_hop(tmp_path: Path, rng: torch.Generator) -> None:
    original = write_run(tmp_path / "run", seed=2)
    model = hear.load_model(str(tmp_path / "run" / "models" / "mine" / "final.pt"), timestamp_hop=0.05)
    seconds = 1.3
    wave = audio(2, seconds, rng)
    embeddings, stamps = hear.get_timestamp_embeddings(wave, model)
    n = stamps.shape[1]
    assert embeddings.shape == (2, n, 8) and stamps.shape == (2, n)
    assert embeddings.dtype == stamps.dtype == torch.float32
    frame_ms = 1000 * 64 / SR
    spacing = np.diff(stamps[0].numpy())
    assert np.allclose(spacing, 6 * frame_ms, atol=1e-3) and spacing[0] <= 50  # 0.05 s -> 6 frames of 8 ms
    assert abs(stamps[0, 0]) <= frame_ms and seconds * 1000 - 50 < stamps[0, -1] <= seconds * 1000
    torch.testing.assert_close(stamps[0], stamps[1])
    # an interior window, cut from the unpadded audio's features, is the embedding at its centre
    width = original.window_frames                      # 62 frames; the padding is 31 frames
    with torch.no_grad():
        features = original.frontend(wave)
        for k in (8, n // 2):
            first = 6 * k - width // 2
            expected = original.encoder(features[:, :, first:first + width])
            torch.testing.assert_close(embeddings[:, k], expected, rtol=1e-5, atol=1e-5)
            assert stamps[0, k].item() == pytest.approx((first + (width - 1) / 2) * frame_ms, abs=1e-3)


def test_bad_input_is_a_clear_value_error(tmp_path: Path) -> None:
    write_run(tmp_path / "run", seed=3)
    model = hear.load_model(str(tmp_path / "run"))
    for bad, message in ((torch.zeros(2, 3, SR), "2-D"), (torch.zeros(SR), "2-D"),
                         (torch.zeros(2, SR, dtype=torch.int16), "floating point"),
                         (np.zeros((2, SR), np.float32), "torch.Tensor"), (torch.zeros(0, SR), "at least one")):
        for function in (hear.get_scene_embeddings, hear.get_timestamp_embeddings):
            with pytest.raises(ValueError, match=message):
                function(bad, model)
    with pytest.raises(ValueError, match="needs model_file_path"):
        hear.load_model()
    with pytest.raises(ValueError, match="timestamp_hop"):
        hear.load_model(str(tmp_path / "run"), timestamp_hop=0)


# -- round trip ------------------------------------------------------------------------------------

def test_round_trip_musicrep_to_hear_to_musicrep(tmp_path: Path, rng: torch.Generator) -> None:
    original = write_run(tmp_path / "run", seed=4)
    encoder = musicrep.get_component("encoder", "hear", module="musicrep.hear", model_file=str(tmp_path / "run"))
    assert encoder.dim == original.dim and encoder.sample_rate == SR
    waveform = musicrep.get_component("frontend", "waveform", sample_rate=SR)
    wave = audio(2, 1.0, rng)
    whole = Embedder(waveform, encoder, window=1.0, hop=1.0).eval()  # one window: the whole clip
    windowed = Embedder(waveform, encoder, window=0.5, hop=0.25).eval()
    with torch.no_grad():
        torch.testing.assert_close(whole(wave), original(wave), rtol=1e-5, atol=1e-5)
        crops = [original(wave[:, s:s + SR // 2]) for s in range(0, SR // 2 + 1, SR // 4)]
        torch.testing.assert_close(windowed(wave), torch.stack(crops).mean(0), rtol=1e-5, atol=1e-5)


@pytest.mark.cuda
def test_export_on_cuda_matches_cpu(tmp_path: Path, rng: torch.Generator) -> None:
    write_run(tmp_path / "run", seed=5)
    cpu = hear.load_model(str(tmp_path / "run"))
    gpu = hear.load_model(str(tmp_path / "run")).to("cuda")
    wave = audio(2, 1.0, rng)
    scene = hear.get_scene_embeddings(wave, gpu)  # CPU audio is moved to the model's device
    embeddings, stamps = hear.get_timestamp_embeddings(wave.cuda(), gpu)
    assert scene.device.type == embeddings.device.type == stamps.device.type == "cuda"
    torch.testing.assert_close(scene.cpu(), hear.get_scene_embeddings(wave, cpu), rtol=1e-4, atol=1e-4)
    expected, expected_stamps = hear.get_timestamp_embeddings(wave, cpu)
    torch.testing.assert_close(embeddings.cpu(), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(stamps.cpu(), expected_stamps)
