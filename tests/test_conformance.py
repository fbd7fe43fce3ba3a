"""``musicrep check KIND NAME``: every built-in component and the example plugin package keep their
kind's contract; a component that breaks one rule fails with that rule named."""
from __future__ import annotations

import socket
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from musicrep import cli
from musicrep import registry as registry_module
from musicrep.config import positive
from musicrep.conformance import check_component, passed
from musicrep.hookspecs import KINDS, hookimpl
from musicrep.registry import Registry

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "musicrep-plugin-example" / "src"
#: small settings where a built-in's defaults are large (the check runs each several times)
SMALL = {("encoder", "sfnfnet"): {"preset": "tiny", "width": 0.25}, ("model", "mule"): {"preset": "tiny"},
         ("encoder", "mel-stats"): {"n_features": 96}, ("encoder", "resnet"): {"channels": [8, 16], "dim": 16},
         ("probe", "mlp"): {"hidden": [0, 16], "lr": [1e-2], "dropout": [0.0], "weight_decay": [0.0]},
         ("probe", "linear"): {"c_grid": [1.0]}}


def outcomes(verdicts) -> dict[str, str]:
    return {v.rule: v.outcome for v in verdicts}


def builtin_components() -> list[tuple[str, str]]:
    registry = Registry()
    return [(kind, name) for kind in KINDS for name, info in registry.components(kind).items()
            if info.package == "musicrep" and not (kind == "model" and name == "hf")]


@pytest.mark.parametrize("kind, name", builtin_components())
def test_every_builtin_component_passes(kind: str, name: str) -> None:
    verdicts = check_component(kind, name, SMALL.get((kind, name), {}), registry=Registry())
    assert passed(verdicts), "\n".join(map(str, verdicts))
    assert outcomes(verdicts)["no network"] == "pass"
    ran = [v.rule for v in verdicts if v.outcome == "pass"]
    assert len(ran) >= 2, verdicts  # at least no network and the config ranges, or the build


def test_the_rules_of_a_module_kind_all_run(tmp_path: Path) -> None:
    verdicts = outcomes(check_component("encoder", "fcn", {"channels": [4, 8], "dim": 8}, registry=Registry()))
    assert verdicts == {rule: "pass" for rule in (
        "config ranges", "builds", "output shape", "dtype", "device", "deterministic", "batch-independent",
        "state dict round trip", "layer names", "no network")}


def test_an_hf_folder_passes_as_a_ready_model(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=32, conv_dim=(8,), conv_stride=(5,), conv_kernel=(10,),
                                         num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2)
    transformers.Wav2Vec2Model(config).save_pretrained(tmp_path, safe_serialization=True)
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=8000).save_pretrained(tmp_path)
    verdicts = check_component("model", f"hf:{tmp_path}", {"window": 0.5, "hop": 0.5}, registry=Registry())
    assert passed(verdicts) and outcomes(verdicts)["layer names"] == "pass", "\n".join(map(str, verdicts))


def test_the_example_plugin_package_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import musicrep_plugin_example

    registry = Registry(load_entry_points=False)
    registry.register(musicrep_plugin_example, name="example", package="musicrep-plugin-example")
    for kind, name, options in (("encoder", "tiny-cnn", {}), ("objective", "byol", {"hidden": [8],
                                                                                     "predictor_hidden": [8]})):
        verdicts = check_component(kind, name, options, registry=registry)
        assert passed(verdicts), "\n".join(map(str, verdicts))
        assert outcomes(verdicts)["state dict round trip"] == "pass"


# -- broken fakes: each breaks one rule ----------------------------------------------------------

class GoodEncoder(nn.Module):
    """Mean over time, then a linear layer: keeps every rule."""

    @dataclass
    class Config:
        dim: int = positive(8)

    layer_names = ("hidden",)

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.dim, self.linear = config.dim, nn.Linear(96, config.dim)

    def forward_layers(self, features: torch.Tensor, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
        hidden = features[:, :4]
        out = {"hidden": hidden, "out": self.linear(features.mean(dim=-1))}
        return {name: out[name] for name in names}

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.forward_layers(features, ("out",))["out"]


class LyingDim(GoodEncoder):
    def __init__(self, config: GoodEncoder.Config) -> None:
        super().__init__(config)
        self.dim = config.dim + 1


class Float64(GoodEncoder):
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return super().forward(features).double()


class OtherDevice(GoodEncoder):
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return super().forward(features).to("meta")


class Noisy(GoodEncoder):
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return super().forward(features) + torch.randn(len(features), self.dim)


class BatchNormalised(GoodEncoder):
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = super().forward(features)
        return out - out.mean(dim=0)


class ForgetsALayer(GoodEncoder):
    def forward_layers(self, features: torch.Tensor, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
        return {"out": self.linear(features.mean(dim=-1))}


class HiddenState(GoodEncoder):
    """Keeps a random projection outside its state dict: a reload cannot restore it."""

    def __init__(self, config: GoodEncoder.Config) -> None:
        super().__init__(config)
        self.__dict__["projection"] = torch.randn(config.dim, config.dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return super().forward(features) @ self.projection


class WrongDefault(GoodEncoder):
    @dataclass
    class Config:
        dim: int = positive(-8)


class PhonesHome(GoodEncoder):
    def __init__(self, config: GoodEncoder.Config) -> None:
        super().__init__(config)
        try:
            socket.create_connection(("198.51.100.1", 443), timeout=0.1)
        except OSError:
            pass  # swallowed: the check still sees the attempt


BROKEN = [(LyingDim, "output shape", r"the contract is \[B, dim\]"), (Float64, "dtype", "gives torch.float64"),
          (OtherDevice, "device", "input on cpu, output on meta"),
          (Noisy, "deterministic", "two calls in eval mode"),
          (BatchNormalised, "batch-independent", "alone than in a batch"),
          (ForgetsALayer, "layer names", r"forward_layers gave \['out'\]"),
          (HiddenState, "state dict round trip", "loaded with the first's state dict gives other outputs"),
          (WrongDefault, "config ranges", "the default of 'dim' breaks its own range"),
          (PhonesHome, "no network", r"tried to connect to \('198\.51\.100\.1', 443\)")]


def fake_registry(encoder: type) -> Registry:
    registry = Registry(load_entry_points=False)
    registry.register(types.SimpleNamespace(musicrep_encoders=hookimpl(lambda: {"broken": encoder})), name="fake",
                      package="their-broken-plugin")
    return registry


def test_the_good_fake_passes() -> None:
    verdicts = check_component("encoder", "broken", registry=fake_registry(GoodEncoder))
    assert all(v.outcome == "pass" for v in verdicts), "\n".join(map(str, verdicts))


@pytest.mark.parametrize("encoder, rule, message", BROKEN, ids=[b[1] for b in BROKEN])
def test_a_broken_component_fails_with_the_rule_named(encoder: type, rule: str, message: str) -> None:
    import re

    verdicts = check_component("encoder", "broken", registry=fake_registry(encoder))
    failed = [v for v in verdicts if v.outcome == "fail"]
    assert rule in [v.rule for v in failed], "\n".join(map(str, verdicts))
    assert re.search(message, next(v for v in failed if v.rule == rule).detail)
    assert not passed(verdicts)


def test_the_cli_prints_a_line_per_rule_and_exits_non_zero_on_a_failure(monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(registry_module, "_default", fake_registry(BatchNormalised))
    assert cli.main(["check", "encoder", "broken", "--set", "dim=4"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("fail  batch-independent: ") for line in lines)
    assert any(line.startswith("pass  output shape: [B, 96, 200] -> [B, 4]") for line in lines)
    monkeypatch.setattr(registry_module, "_default", fake_registry(GoodEncoder))
    assert cli.main(["check", "encoder", "broken"]) == 0


def test_a_component_needing_options_says_so() -> None:
    verdicts = check_component("task", "csv", registry=Registry())
    assert passed(verdicts)
    contract = next(v for v in verdicts if v.rule == "contract")
    assert contract.outcome == "skip" and "--set" in contract.detail


def test_a_musicrep_run_is_checked_as_a_ready_model(tmp_path: Path) -> None:
    """``musicrep check model RUN/models/<m>``: what load_model reads, through the same rules."""
    import musicrep
    from musicrep.model import Embedder

    frontend = musicrep.get_component("frontend", "mel", sample_rate=8000, n_fft=256, hop_length=128, n_mels=16)
    encoder = musicrep.get_component("encoder", "fcn", channels=[4, 8], dim=8)
    embedder = Embedder(frontend, encoder, window=0.5, hop=0.5)
    description = {"frontend": {"type": "mel", **vars(frontend.config)}, "encoder": {"type": "fcn", **vars(encoder.config)}}
    folder = tmp_path / "models" / "m"
    folder.mkdir(parents=True)
    torch.save({"key": "k", "embedder": embedder.state_dict(), "description": description, "summary": {}},
               folder / "final.pt")
    (tmp_path / "pipeline.toml").write_text("[embed]\nwindow = 0.5\nhop = 0.5\n")
    verdicts = check_component("model", str(folder), registry=Registry())
    assert passed(verdicts), "\n".join(map(str, verdicts))
    assert outcomes(verdicts)["layer names"] == "pass" and outcomes(verdicts)["output shape"] == "pass"
