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
    shutil.copy(RECIPES / f"{name}.toml", tmp_path)
    table = run_pipeline(tmp_path / f"{name}.toml")
    assert "mule-small" in table
    run_dir = next((tmp_path / "runs").iterdir())
    assert (run_dir / "models" / "mule-small" / "final.pt").exists()
    assert (run_dir / "report.md").exists()
