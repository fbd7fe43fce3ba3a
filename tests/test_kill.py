"""kill -9 during pre-training, then the same command again: the run resumes from its last
checkpoint and ends with the same model as a run that was never interrupted."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

PIPELINE = """
[run]
name = "{name}"
seed = 5

[tasks.pitch]
type = "synth"
label = "pitch"
n_train = 32
n_valid = 8
n_test = 8
seconds = 1.5

[models.small]
frontend = {{ type = "mel", n_mels = 32 }}
encoder = {{ type = "fcn", channels = [4, 8], dim = 8 }}

[models.small.pretrain]
objective = {{ type = "simclr", hidden = [16], projection_dim = 8 }}
augmentations = [{{ type = "gain" }}, {{ type = "noise" }}]
data = ["pitch"]
steps = 40
batch_size = 8
clip_seconds = 1.0
warmup_steps = 2
checkpoint_every = 5

[embed]
window = 1.0
hop = 0.5
"""


def command(path: Path) -> list[str]:
    return [sys.executable, "-m", "musicrep.cli", "run", str(path)]


def steps_logged(run_dir: Path) -> int:
    log = run_dir / "models" / "small" / "metrics.jsonl"
    if not log.exists():
        return 0
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    return json.loads(lines[-1])["step"] if lines else 0


@pytest.mark.slow
def test_kill_9_during_pretraining_then_resume(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole = tmp_path / "whole.toml"
    whole.write_text(PIPELINE.format(name="whole"))
    subprocess.run(command(whole), check=True, capture_output=True, env=env, timeout=600)

    killed = tmp_path / "killed.toml"
    killed.write_text(PIPELINE.format(name="killed"))
    run_dir = tmp_path / "runs" / "killed"
    process = subprocess.Popen(command(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 300
    while steps_logged(run_dir) < 17 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    checkpoint = torch.load(run_dir / "models" / "small" / "last.pt", weights_only=False)
    assert 15 <= checkpoint["step"] < 40  # the last checkpoint before the kill survived it whole
    assert not (run_dir / "models" / "small" / "final.pt").exists()

    result = subprocess.run(command(killed), check=True, capture_output=True, text=True, env=env, timeout=600)
    assert "pretrain small: 40 steps" in result.stderr
    a = torch.load(tmp_path / "runs" / "whole" / "models" / "small" / "final.pt", weights_only=False)["embedder"]
    b = torch.load(run_dir / "models" / "small" / "final.pt", weights_only=False)["embedder"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5, msg=name)
    steps = [json.loads(line)["step"] for line in
             (run_dir / "models" / "small" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 41))  # the log lines past the checkpoint were redone, not doubled
