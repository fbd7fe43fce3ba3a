"""A whole run on the GPU: pre-train a few steps, embed and probe with ``device = "cuda"`` and
``precision = "auto"`` (bfloat16 autocast there), the way a user with a GPU runs musicrep."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from musicrep.pipeline.runner import run_pipeline
from musicrep.store import EmbeddingStore

from pipeline_fakes import synth_pitch_task

PIPELINE = """
[run]
name = "gpu"
seed = 4
device = "cuda"

""" + synth_pitch_task(1.0) + """
[models.small]
frontend = { type = "mel", n_fft = 256, hop_length = 128, n_mels = 16 }
encoder = { type = "fcn", channels = [4, 8], dim = 8 }

[models.small.pretrain]
objective = { type = "simclr", hidden = [8], projection_dim = 4 }
data = ["pitch"]
steps = 4
batch_size = 4
clip_seconds = 0.5
warmup_steps = 1
checkpoint_every = 2
precision = "auto"

[embed]
window = 0.5
hop = 0.25

[probe]
probes = [{ type = "linear", c_grid = [1.0] }, { type = "knn", k_grid = [1] }]
"""

# Another process takes the run's lock: POSIX record locks are per process, so only a second
# process can tell whether the run let go of it.
TAKE_LOCK = "import fcntl, sys; fcntl.lockf(open(sys.argv[1], 'a+'), fcntl.LOCK_EX | fcntl.LOCK_NB)"


@pytest.mark.cuda
def test_a_small_pipeline_runs_on_the_gpu(tmp_path: Path) -> None:
    toml = tmp_path / "pipeline.toml"
    toml.write_text(PIPELINE)
    torch.cuda.reset_peak_memory_stats()
    run_pipeline(toml)
    assert torch.cuda.max_memory_allocated() > 0  # the work did reach the GPU
    run_dir = tmp_path / "runs" / "gpu"
    assert (run_dir / "models" / "small" / "final.pt").exists()
    with EmbeddingStore(run_dir / "embeddings" / "small" / "pitch.h5") as store:
        assert len(store) == 24 and store.dim == 8
        embeddings = store.embeddings()
        assert np.isfinite(embeddings).all() and embeddings.std() > 0
    rows = json.loads((run_dir / "results.json").read_text())
    assert {r["probe"] for r in rows if r["model"] == "small"} >= {"linear", "knn"}
    assert all(np.isfinite(r["value"]) for r in rows)
    taken = subprocess.run([sys.executable, "-c", TAKE_LOCK, str(run_dir / ".lock")], capture_output=True, text=True)
    assert taken.returncode == 0, f"the run's lock is still held: {taken.stderr}"
