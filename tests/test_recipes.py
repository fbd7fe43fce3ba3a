"""The MULE recipes: the full ones describe the paper's settings; the -small ones run here."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from musicrep.pipeline.runner import run_pipeline
from musicrep.pipeline.spec import load_pipeline

RECIPES = Path(__file__).resolve().parents[1] / "examples" / "mule"


@pytest.mark.parametrize("name", ["contrastive", "supervised"])
def test_full_recipes_hold_the_papers_settings(tmp_path: Path, name: str) -> None:
    shutil.copy(RECIPES / f"{name}.toml", tmp_path)
    (tmp_path / "audio").mkdir()  # the user's audio folder the contrastive recipe names
    spec = load_pipeline(tmp_path / f"{name}.toml")
    [model] = spec.models.values()
    assert model.frontend.name == "mule-mel" and model.encoder.name == "sfnfnet"
    assert model.encoder.config.preset == "f0"
    assert (spec.embed.window, spec.embed.hop, spec.embed.windowing) == (3.0, 2.0, "centered")
    assert model.pretrain.clip_seconds == 3.0
    objective = model.objective.config
    if name == "contrastive":
        assert model.objective.name == "simclr" and objective.temperature == 0.1
        assert model.pretrain.batch_size == 1920
        assert objective.hidden + [objective.projection_dim] == [4096, 4096, 4096]
    else:
        assert model.objective.name == "supervised" and objective.hidden == [4096, 4096, 4096]
        assert spec.tasks["tags"].config.prediction_type == "multilabel"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["contrastive-small", "supervised-small"])
def test_small_recipes_run_end_to_end(tmp_path: Path, name: str) -> None:
    recipe = (RECIPES / f"{name}.toml").read_text()
    assert recipe.count("[run]\n") == 1
    (tmp_path / f"{name}.toml").write_text(recipe.replace("[run]\n", '[run]\ndevice = "cpu"\n'))  # not a CUDA test
    table = run_pipeline(tmp_path / f"{name}.toml")
    assert "mule-small" in table
    run_dir = next((tmp_path / "runs").iterdir())
    assert (run_dir / "models" / "mule-small" / "final.pt").exists()
    assert (run_dir / "report.md").exists()


LOADED = """
[run]
name = "{name}"
device = "cpu"

[tasks.pitch]
type = "synth"
label = "pitch"
n_train = 16
n_valid = 8
n_test = 8
seconds = 1.5

[models.{model}]
{model_lines}

[embed]
window = 1.0
hop = 0.5
"""


def test_a_pipeline_names_a_pretrained_run_as_a_model(tmp_path: Path) -> None:
    from musicrep.store import EmbeddingStore

    first = tmp_path / "first.toml"
    first.write_text(LOADED.format(name="first", model="small", model_lines=(
        'frontend = { type = "mel", n_mels = 32 }\nencoder = { type = "fcn", channels = [4, 8], dim = 8 }\n'
        '[models.small.pretrain]\nobjective = { type = "supervised" }\ndata = ["pitch"]\nsteps = 3\n'
        'batch_size = 8\nclip_seconds = 1.0\nwarmup_steps = 1')))
    run_pipeline(first)
    second = tmp_path / "second.toml"
    second.write_text(LOADED.format(name="second", model="reloaded",
                                    model_lines='load = "runs/first/models/small"'))
    run_pipeline(second)
    with EmbeddingStore(tmp_path / "runs/first/embeddings/small/pitch.h5") as a, \
            EmbeddingStore(tmp_path / "runs/second/embeddings/reloaded/pitch.h5") as b:
        assert a.provenance["weights"] == b.provenance["weights"]  # the same weights
        import numpy as np

        np.testing.assert_allclose(a.embeddings(), b.embeddings(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("lines, message", [
    ('load = "mule"\nencoder = { type = "fcn" }', "'encoder' cannot be combined with load"),
    ('load = "no/such/run"', "neither a known model"),
    ('load = "mule"\nweights = "missing.safetensors"', "no such file or folder"),
    ('frontend = "mel"\nencoder = "fcn"\nweights = "x"', "weights go with load"),
])
def test_bad_loaded_models_name_the_key(tmp_path: Path, lines: str, message: str) -> None:
    from musicrep.errors import ConfigError

    path = tmp_path / "p.toml"
    path.write_text(LOADED.format(name="x", model="m", model_lines=lines))
    with pytest.raises(ConfigError, match=message) as err:
        load_pipeline(path)
    assert err.value.section == "models.m"


def test_the_quickstart_demo_is_a_valid_plan(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    demo = Path(__file__).resolve().parents[1] / "examples" / "quickstart.toml"
    shutil.copy(demo, tmp_path)
    assert run_pipeline(tmp_path / "quickstart.toml", dry_run=True) is None
    err = capsys.readouterr().err
    assert "pretrain contrastive: to do" in err and "embed mel-stats/timbre: to do" in err
    assert not (tmp_path / "runs").exists()
