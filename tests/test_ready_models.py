"""Ready-made models are a plugin kind: a third party ships one in a package (as they ship
encoders), ``musicrep plugins`` lists it, and ``musicrep.load_model(name)`` and
``[models.x] load = name`` find it through the registry."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import musicrep
from musicrep import registry as registry_module
from musicrep.errors import MusicrepError
from musicrep.registry import Registry

PACKAGE = "their-published-encoder"
MODULE = """
    from safetensors.torch import load_file

    from musicrep.hookspecs import hookimpl
    from musicrep.load import check_state_dict, split_overrides
    from musicrep.model import Embedder
    from musicrep.registry import get_component

    def build(weights, overrides):
        '''Their published encoder: a small mel + FCN, 1 s windows every 0.5 s.'''
        embed_options, encoder_options = split_overrides(overrides)
        frontend = get_component("frontend", "mel", sample_rate=8000, n_fft=256, hop_length=128, n_mels=16)
        encoder = get_component("encoder", "fcn", **{"channels": [4, 8], "dim": 8, **encoder_options})
        embedder = Embedder(frontend, encoder, **{"window": 1.0, "hop": 0.5, **embed_options})
        if weights is not None:
            tensors = load_file(str(weights))
            check_state_dict(weights, embedder.state_dict(), tensors, model="their encoder")
            embedder.load_state_dict(tensors)
        return embedder

    @hookimpl
    def musicrep_models():
        return {"theirs": build}
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding an installed distribution whose entry point offers the model "theirs"."""
    site = tmp_path_factory.mktemp("ready-site")
    (site / "their_models.py").write_text(textwrap.dedent(MODULE))
    dist = site / "their_published_encoder-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[musicrep.plugins]\ntheirs = their_models\n")
    return site


@pytest.fixture
def installed(site: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """The process's default registry as it is when the package is installed."""
    monkeypatch.syspath_prepend(str(site))
    registry = Registry()
    monkeypatch.setattr(registry_module, "_default", registry)
    return registry


def trained_weights(path: Path, seed: int) -> dict[str, torch.Tensor]:
    """Weights as their authors would publish them: the model's state dict, trained (perturbed)."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    embedder = musicrep.load_model("theirs").embedder
    state = {k: (v + 0.1 * torch.randn_like(v) if v.is_floating_point() else v + 1).contiguous()
             for k, v in embedder.state_dict().items()}
    save_file(state, str(path))
    return state


def test_a_packaged_model_loads_by_name_with_its_weights(installed: Registry, tmp_path: Path) -> None:
    info = installed.components("model")["theirs"]
    assert info.package == PACKAGE and info.summary.startswith("Their published encoder")
    state = trained_weights(tmp_path / "theirs.safetensors", seed=5)
    model = musicrep.load_model("theirs", weights=tmp_path / "theirs.safetensors", hop=0.25)
    loaded = model.embedder.state_dict()
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    wave = torch.randn(2, 8000 * 2, generator=torch.Generator().manual_seed(1))
    timeline, offsets = model.timeline(wave)
    assert model.embedder.hop_seconds == 0.25  # the override reached the windowing
    assert timeline.shape == (2, len(offsets), 8) and abs(float(offsets[1] - offsets[0]) - 0.25) <= 0.016


def test_a_packaged_model_checks_its_weights(installed: Registry, tmp_path: Path) -> None:
    state = trained_weights(tmp_path / "theirs.safetensors", seed=6)
    name = next(k for k in state if k.endswith("weight") and state[k].dim() > 1)
    state[name] = state[name][:1].contiguous()
    from safetensors.torch import save_file

    save_file(state, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(MusicrepError, match=rf"wrong\.safetensors: tensor '{name}' has shape .*their encoder needs"):
        musicrep.load_model("theirs", weights=tmp_path / "wrong.safetensors")


def test_a_pipeline_loads_a_packaged_model(installed: Registry, tmp_path: Path) -> None:
    from musicrep.pipeline.spec import load_pipeline

    toml = tmp_path / "pipeline.toml"
    toml.write_text('[tasks.t]\ntype = "synth"\n\n[models.mine]\nload = "theirs"\n')
    spec = load_pipeline(toml, installed)
    assert spec.models["mine"].load == "theirs"
    toml.write_text('[tasks.t]\ntype = "synth"\n\n[models.mine]\nload = "thiers"\n')
    with pytest.raises(MusicrepError, match=r"'thiers' is neither a known model \(.*theirs.*\)"):
        load_pipeline(toml, installed)


def test_plugins_lists_the_packaged_model(site: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-m", "musicrep.cli", "plugins", "model"], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "model:"
    assert any("theirs" in line and f"[{PACKAGE}]" in line and "Their published encoder" in line for line in lines)
    assert any(line.split()[0] == "mule" for line in lines[1:])


def test_the_default_probes_come_from_the_plugins(tmp_path: Path) -> None:
    """A pipeline without [probe] runs the probes their plugins mark ``default`` (the built-in
    linear probe); with no default installed it asks for a probe list."""
    from musicrep.pipeline.spec import load_pipeline
    from musicrep.plugins import probes, tasks

    toml = tmp_path / "pipeline.toml"
    toml.write_text('[tasks.t]\ntype = "synth"\n\n[models.m]\nload = "mule"\n')
    assert [p.name for p in load_pipeline(toml).probes] == ["linear"]
    bare = Registry(load_entry_points=False)
    bare.register(tasks, name="tasks")
    bare.register(types_namespace(musicrep_probes=lambda: {"knn": probes.KNNProbe}), name="knn-only")
    bare.register(types_namespace(musicrep_models=lambda: {"mule": object}), name="model")
    with pytest.raises(MusicrepError, match=r"\[probe\] key 'probes': name the probes to run"):
        load_pipeline(toml, bare)
    toml.write_text(toml.read_text() + '\n[probe]\nprobes = ["knn"]\n')
    assert [p.name for p in load_pipeline(toml, bare).probes] == ["knn"]


def types_namespace(**hooks):
    """A plugin object whose hooks are the given functions."""
    import types

    from musicrep.hookspecs import hookimpl

    return types.SimpleNamespace(**{name: hookimpl(fn) for name, fn in hooks.items()})
