"""Every file and folder a run writes has the mode ``open()`` and ``mkdir()`` give under the
user's umask: temporary-then-rename writes must not leave results readable by their owner only."""
from __future__ import annotations

import os
import random
import stat
from pathlib import Path

import pytest

from musicrep.pipeline.runner import run_pipeline
from musicrep.registry import Registry
from pipeline_fakes import PLUGIN

PIPELINE = """
[run]
name = "modes"
device = "cpu"

[tasks.tones]
type = "tones"

[models.small]
frontend = { type = "frames" }
encoder = { type = "fcn", channels = [4], dim = 8 }

[models.small.pretrain]
objective = { type = "simclr", hidden = [8], projection_dim = 8 }
data = ["tones"]
steps = 3
batch_size = 4
clip_seconds = 0.5
warmup_steps = 1
checkpoint_every = 1

[embed]
window = 0.5
hop = 0.25
checkpoint_every = 4

[probe]
probes = [{ type = "linear" }]
"""


@pytest.fixture
def umask() -> int:
    mask = random.choice([0o002, 0o022, 0o027, 0o007])
    old = os.umask(mask)
    yield mask
    os.umask(old)


def test_every_file_a_run_writes_honours_the_umask(tmp_path: Path, umask: int) -> None:
    registry = Registry()
    registry.register(PLUGIN, name="fakes", package="tests")
    pipeline = tmp_path / "modes.toml"
    pipeline.write_text(PIPELINE)
    run_pipeline(pipeline, registry=registry)
    run = tmp_path / "runs" / "modes"
    written = sorted(run.rglob("*"))
    names = {p.relative_to(run).as_posix() for p in written}
    for expected in ("pipeline.toml", ".lock", "models/small/last.pt", "models/small/final.pt",
                     "models/small/metrics.jsonl", "models/small/pretrain.json", "embeddings/small/tones.h5",
                     "probes/small/tones/linear.json", "report.md", "results.json", "results.csv"):
        assert expected in names, sorted(names)
    assert any(name.startswith("plots/") and name.endswith(".png") for name in names)
    for path in written:
        mode = stat.S_IMODE(path.stat().st_mode)
        wanted = (0o777 if path.is_dir() else 0o666) & ~umask
        assert mode == wanted, f"{path.relative_to(run)}: mode {mode:o}, umask {umask:03o} gives {wanted:o}"
