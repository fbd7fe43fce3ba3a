"""``musicrep.load_model`` on what the pipeline writes: RUN_DIR/models/<model>/final.pt."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pipeline_fakes import PLUGIN

import musicrep
from musicrep.errors import MusicrepError
from musicrep.model import Embedder, centered_window_starts, cut_windows
from musicrep.registry import default_registry


@pytest.fixture
def fakes():
    registry = default_registry()
    name = registry.register(PLUGIN, name="load-fakes", package="tests")
    yield registry
    registry.unregister(name)


def write_run(run_dir: Path, model: str, seed: int) -> Embedder:
    """A pre-trained model as the pretrain stage saves it, with a pipeline.toml beside it."""
    torch.manual_seed(seed)
    frontend = musicrep.get_component("frontend", "frames", sample_rate=8000, n_fft=256, hop_length=128)
    encoder = musicrep.get_component("encoder", "sfnfnet", preset="tiny")
    embedder = Embedder(frontend, encoder, window=1.0, hop=0.5, pooling="mean+std")
    with torch.no_grad():  # trained weights: every gain and bias away from its initial value
        for p in embedder.parameters():
            p.add_(0.1 * torch.randn_like(p))
    description = {"frontend": {"type": "frames", "sample_rate": 8000, "n_fft": 256, "hop_length": 128},
                   "encoder": {"type": "sfnfnet", **vars(encoder.config)}}
    out = run_dir / "models" / model
    out.mkdir(parents=True)
    torch.save({"key": "k", "embedder": embedder.state_dict(), "description": description, "summary": {}},
               out / "final.pt")
    (run_dir / "pipeline.toml").write_text("[embed]\nwindow = 1.0\nhop = 0.5\npooling = \"mean+std\"\n")
    return embedder.eval()


def test_run_dir_model_dir_and_checkpoint_load_the_same_model(tmp_path: Path, fakes) -> None:
    original = write_run(tmp_path / "run", "mine", seed=3)
    wave = torch.randn(2, 8000 * 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected_timeline, expected_offsets = original.timeline(wave)
        expected = original(wave)
    for path in (tmp_path / "run", tmp_path / "run" / "models" / "mine",
                 tmp_path / "run" / "models" / "mine" / "final.pt"):
        model = musicrep.load_model(path)
        assert model.sample_rate == 8000 and model.dim == 2 * original.encoder.dim
        timeline, offsets = model.timeline(wave)
        torch.testing.assert_close(timeline, expected_timeline)
        torch.testing.assert_close(offsets, expected_offsets)
        torch.testing.assert_close(model(wave), expected)


def test_run_with_two_models_asks_which(tmp_path: Path, fakes) -> None:
    write_run(tmp_path / "run", "a", seed=1)
    (tmp_path / "run" / "pipeline.toml").unlink()
    write_run(tmp_path / "run", "b", seed=2)
    with pytest.raises(MusicrepError, match=r"several pre-trained models \(a, b\)"):
        musicrep.load_model(tmp_path / "run")
    assert musicrep.load_model(tmp_path / "run" / "models" / "b").dim > 0


def test_bad_checkpoints_name_file_and_tensor(tmp_path: Path, fakes) -> None:
    write_run(tmp_path / "run", "mine", seed=4)
    final = tmp_path / "run" / "models" / "mine" / "final.pt"
    state = torch.load(final, weights_only=True)
    name = "encoder.fast.stages.1.0.conv2.weight"
    state["embedder"][name] = state["embedder"][name][:1]
    torch.save(state, final)
    with pytest.raises(MusicrepError, match=rf"final\.pt: tensor '{name}' has shape"):
        musicrep.load_model(final)
    state["description"]["encoder"]["type"] = "uninstalled-encoder"
    torch.save(state, final)
    with pytest.raises(MusicrepError, match=r"final\.pt: cannot rebuild its encoder: unknown encoder"):
        musicrep.load_model(final)
    final.write_bytes(b"not a checkpoint")
    with pytest.raises(MusicrepError, match=r"final\.pt: not a readable checkpoint"):
        musicrep.load_model(final)
    with pytest.raises(MusicrepError, match="no pre-trained model here"):
        musicrep.load_model(tmp_path)
    with pytest.raises(ValueError, match="weights= applies"):
        musicrep.load_model(final, weights=final)


def test_centred_windows_follow_mule() -> None:
    # centres every hop after frame 0, clamped inside; short tracks: one padded window
    assert centered_window_starts(1001, 300, 200) == [50, 250, 450, 650, 701]
    assert centered_window_starts(900, 300, 200) == [50, 250, 450, 600]
    assert centered_window_starts(300, 300, 200) == [0]
    assert centered_window_starts(120, 300, 200) == [0]
    features = torch.randn(4, 777)
    windows, starts = cut_windows(features, 300, 200, "centered")
    assert windows.shape == (len(starts), 4, 300)
    for window, start in zip(windows, starts):
        torch.testing.assert_close(window, features[:, start:start + 300])
    with pytest.raises(ValueError, match="windowing"):
        Embedder(torch.nn.Identity(), torch.nn.Identity(), windowing="middle")


def test_a_run_reloads_with_its_own_embed_settings(tmp_path: Path, fakes) -> None:
    """The saved [embed] is read through the same spec the run used, so every windowing key
    (``windowing = "centered"`` as in the MULE recipes) and every default survives a reload."""
    original = write_run(tmp_path / "run", "mine", seed=5)
    toml = tmp_path / "run" / "pipeline.toml"
    toml.write_text('[embed]\nwindow = 1.0\nhop = 0.5\npooling = "mean+std"\nwindowing = "centered"\n')
    model = musicrep.load_model(tmp_path / "run")
    assert (model.embedder.windowing, model.embedder.window_seconds, model.embedder.hop_seconds,
            model.embedder.pooling) == ("centered", 1.0, 0.5, "mean+std")
    original.windowing = "centered"
    wave = torch.randn(1, 8000 * 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected_timeline, expected_offsets = original.timeline(wave)
    timeline, offsets = model.timeline(wave)
    torch.testing.assert_close(offsets, expected_offsets)
    torch.testing.assert_close(timeline, expected_timeline)
    assert musicrep.load_model(tmp_path / "run", windowing="start").embedder.windowing == "start"  # overrides win
    toml.write_text('[embed]\nwindow = 1.0\nhop = 0.5\npooling = "mean+std"\n')  # the spec's default
    assert musicrep.load_model(tmp_path / "run").embedder.windowing == "start"
    toml.write_text('[embed]\nwindowing = "middle"\n')
    with pytest.raises(MusicrepError, match=r"pipeline\.toml \[embed\] key 'windowing'"):
        musicrep.load_model(tmp_path / "run")
