"""The example third-party plugin package, pip-installed as a user would, found through its
entry point, listed by ``musicrep plugins``, and used by ``musicrep run`` end to end."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from musicrep.objective import TrainingData

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "musicrep-plugin-example"

PIPELINE = """
[run]
name = "byol"
device = "cpu"
seed = 1

[tasks.pitch]
type = "synth"
label = "pitch"
n_classes = 3
n_train = 16
n_valid = 6
n_test = 6
seconds = 1.0
sample_rate = 8000

[models.example]
frontend = { type = "mel", sample_rate = 8000, n_fft = 256, hop_length = 128, n_mels = 16 }
encoder = { type = "tiny-cnn", channels = 4, dim = 8 }

[models.example.pretrain]
objective = { type = "byol", hidden = [16], predictor_hidden = [16], projection_dim = 8, momentum = 0.9 }
augmentations = [{ type = "gain" }, { type = "noise" }]
data = ["pitch"]
steps = 4
batch_size = 8
clip_seconds = 0.5
warmup_steps = 1

[embed]
window = 0.5
hop = 0.25
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The example installed into a private --target folder: an environment that sees it."""
    tmp = tmp_path_factory.mktemp("plugin")
    source = tmp / "source"  # build from a copy: pip's in-tree build leaves build/ and egg-info behind
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation", "--no-deps",
                    "--no-index", "--target", str(target), str(source)], check=True, capture_output=True,
                   timeout=300)
    path = os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def musicrep(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "musicrep.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


def test_musicrep_plugins_lists_the_example_components(installed: dict[str, str]) -> None:
    result = musicrep(["plugins"], installed)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    encoder = next(line for line in lines if line.strip().startswith("tiny-cnn "))
    objective = next(line for line in lines if line.strip().startswith("byol "))
    for line in (encoder, objective):
        assert "[musicrep-plugin-example]" in line and "(example plugin)" in line
    assert "failed to load" not in result.stdout


def test_pipeline_pretrains_with_the_example_encoder_and_byol(installed: dict[str, str], tmp_path: Path) -> None:
    toml = tmp_path / "pipeline.toml"
    toml.write_text(PIPELINE)
    result = musicrep(["run", str(toml)], installed)
    assert result.returncode == 0, result.stderr
    assert "pretrain example: 4 steps" in result.stderr
    run_dir = tmp_path / "runs" / "byol"
    checkpoint = run_dir / "models" / "example"
    assert (checkpoint / "final.pt").exists()
    rows = json.loads((run_dir / "results.json").read_text())
    values = [r["value"] for r in rows if r["model"] == "example"]
    assert values and all(isinstance(v, float) and math.isfinite(v) for v in values)


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch):
    """The example package imported from its source tree (for unit tests of its parts)."""
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    import musicrep_plugin_example

    yield musicrep_plugin_example
    for name in [m for m in sys.modules if m.startswith("musicrep_plugin_example")]:
        del sys.modules[name]


def test_byol_target_is_an_ema_of_the_online_network(example, rng: torch.Generator) -> None:
    from musicrep_plugin_example.byol import BYOL
    from musicrep_plugin_example.encoder import TinyCNN

    encoder = TinyCNN(TinyCNN.Config(channels=4, dim=8))
    byol = BYOL(BYOL.Config(hidden=[16], predictor_hidden=[16], projection_dim=8, momentum=0.75))
    byol.setup(encoder.dim, TrainingData(None, 0))
    byol.attach(encoder)
    features = [torch.randn(6, 16, 20, generator=rng) for _ in range(2)]
    loss = byol([encoder(f) for f in features], None, features=features)
    assert loss.dim() == 0 and 0 <= loss.item() <= 4  # 2 - 2 cos, averaged over both directions
    loss.backward()
    assert all(p.grad is None for p in byol.target.parameters())  # no gradient into the target
    assert encoder.head.weight.grad is not None and byol.predictor[0].weight.grad is not None
    before = [p.detach().clone() for p in byol.target.parameters()]
    online = list(encoder.parameters()) + list(byol.projector.parameters())
    with torch.no_grad():  # an optimizer step moved the online network
        for p in online:
            p.add_(torch.randn(p.shape, generator=rng))
        byol.after_step(1, encoder)
    for b, t, o in zip(before, byol.target.parameters(), online, strict=True):
        torch.testing.assert_close(t, 0.75 * b + 0.25 * o)


def test_example_configs_name_the_bad_key(example) -> None:
    from musicrep.config import build_config
    from musicrep.errors import ConfigError

    with pytest.raises(ConfigError, match="key 'momentum'"):
        build_config(example.BYOL.Config, {"momentum": 1.0})
    with pytest.raises(ConfigError, match="key 'channels'"):
        build_config(example.TinyCNN.Config, {"channels": 0})
