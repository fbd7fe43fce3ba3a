"""Real ``musicrep run`` processes, stopped or killed at chosen points, and what they leave behind.

The reliability tests drive the command line exactly as a user does (a subprocess per run),
watch the run directory for progress (log lines, part files, probe results) and send signals.
Every process runs single-threaded (OMP_NUM_THREADS=1): lean on a 2-core CI machine, and its
floating-point results do not depend on how many threads the machine has.
"""
from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np
import torch

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

# Tiny but complete: 40 pre-training steps with a checkpoint every 5, an embed stage of 60 tracks
# (2 windows each, decoded by 2 worker processes) that writes a part file once 4 tracks wait
# (parts end between encoder batches of 6 windows, so 6 tracks a part), and three probes, each
# with its own result file.
PIPELINE = """
[run]
name = "{name}"
device = "cpu"
seed = 5

[tasks.pitch]
type = "synth"
label = "pitch"
n_classes = 4
n_train = 32
n_valid = 12
n_test = 16
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
batch_size = 6
checkpoint_every = 4
num_workers = 2

[probe]
probes = [{{ type = "linear" }}, {{ type = "knn", k_grid = [1, 3, 5] }},
          {{ type = "mlp", hidden = [0, 16], lr = [1e-2], weight_decay = [0.0], dropout = [0.0], epochs = 60 }}]
"""
MODEL, TASK = "small", "pitch"
STEPS, CHECKPOINT_EVERY, TRACKS, PROBES = 40, 5, 60, ("linear", "knn", "mlp")


def write_pipeline(folder: Path, name: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(PIPELINE.format(name=name))
    return path


def run_dir(pipeline: Path) -> Path:
    return pipeline.parent / "runs" / pipeline.stem


def as_from_a_shell() -> None:
    """``preexec_fn``: the child starts with Ctrl-C and SIGTERM as a shell gives them (default
    action, not blocked), whatever this test process has done with its own: an ignored or
    blocked signal is inherited through fork and exec, and a run would then never see one."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "musicrep.cli", *map(str, args)]


def run(*args: str | Path) -> subprocess.CompletedProcess:
    """A command to its end; stdout and stderr as text."""
    return subprocess.run(command(*args), capture_output=True, text=True, env=ENV, timeout=300,
                          preexec_fn=as_from_a_shell)


class Process:
    """A ``musicrep`` command in the background; its output goes to a file (no pipe to fill)."""

    def __init__(self, *args: str | Path, log: Path) -> None:
        self.log = log
        with open(log, "w") as out:
            self.popen = subprocess.Popen(command(*args), stdout=out, stderr=subprocess.STDOUT, env=ENV,
                                          preexec_fn=as_from_a_shell)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait_for(self, ready: Callable[[], bool], what: str, timeout: float = 240) -> None:
        """Poll ``ready`` every 5 ms while the process runs; fail if it ends or times out first."""
        deadline = time.monotonic() + timeout
        while not ready():
            if not self.running():
                raise AssertionError(f"{self.log}: the run ended before {what}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.log}: timed out waiting for {what}:\n{self.output()}")
            time.sleep(0.005)

    def kill(self) -> None:
        assert self.running(), f"{self.log}: the run ended before it could be killed:\n{self.output()}"
        self.popen.send_signal(signal.SIGKILL)
        assert self.popen.wait(timeout=60) == -signal.SIGKILL

    def pause(self) -> None:
        """SIGSTOP, and wait until the process is stopped (signals are delivered asynchronously)."""
        self.popen.send_signal(signal.SIGSTOP)
        stat = Path(f"/proc/{self.pid}/stat")
        while stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] not in ("T", "t"):
            time.sleep(0.001)

    def resume(self) -> None:
        self.popen.send_signal(signal.SIGCONT)

    def finish(self, timeout: float = 300) -> str:
        code = self.popen.wait(timeout=timeout)
        assert code == 0, f"{self.log}: exit {code}:\n{self.output()}"
        return self.output()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


# -- progress, read the way a careful outsider would: only complete lines and files count


def steps_logged(run: Path) -> int:
    log = run / "models" / MODEL / "metrics.jsonl"
    steps = 0
    if log.exists():
        for line in log.read_text().splitlines():
            try:
                steps = json.loads(line)["step"]
            except ValueError:  # the line being written right now
                break
    return steps


def store_path(run: Path) -> Path:
    """The task's view: written once the model's store holds every clip of the task."""
    return run / "embeddings" / MODEL / f"{TASK}.h5"


def parts_dir(run: Path) -> Path:
    """The journal of the model's store (the run has one store): its part files while embedding."""
    found = sorted(run.glob("stores/*/journal"))
    return found[0] if found else run / "stores" / "none" / "journal"


def segments(run: Path) -> list[Path]:
    return sorted(run.glob("stores/*/segments/seg-*.h5"))


def parts_written(run: Path) -> int:
    return len(list(parts_dir(run).glob("part-*.npz")))


def tracks_in_parts(run: Path) -> int:
    """Tracks held by the part files a killed extraction left (they are written atomically)."""
    total = 0
    for part in parts_dir(run).glob("part-*.npz"):
        with np.load(part) as data:
            total += len(data["ids"])
    return total


def probes_written(run: Path) -> list[str]:
    return sorted(p.stem for p in (run / "probes" / MODEL / TASK).glob("*.json"))


def lock_holder(run: Path) -> int | None:
    """The pid written into the run's lock file (by the process that holds the lock)."""
    try:
        return int((run / ".lock").read_text())
    except (FileNotFoundError, ValueError):
        return None


# -- everything a run leaves that must not depend on how often it was interrupted


def store_contents(path: Path) -> dict[str, Any]:
    """Every dataset and attribute of an HDF5 store."""
    out: dict[str, Any] = {}
    with h5py.File(path, "r") as h5:
        h5.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        out.update({f"@{key}": value for key, value in h5.attrs.items()})
    return out


def outputs(run: Path) -> dict[str, Any]:
    final = torch.load(run / "models" / MODEL / "final.pt", weights_only=True)
    log = [json.loads(line) for line in (run / "models" / MODEL / "metrics.jsonl").read_text().splitlines()]
    return {
        "weights": final["embedder"], "key": final["key"],
        "log": [(r["step"], r["loss"], r["lr"]) for r in log],  # not clips_per_s: a speed
        "store": {**store_contents(store_path(run)),
                  **{f"{p.parent.parent.name}/{p.name}/{k}": v for p in segments(run) for k, v in store_contents(p).items()}},
        "probes": {p: json.loads((run / "probes" / MODEL / TASK / f"{p}.json").read_text()) for p in PROBES},
        "results": json.loads((run / "results.json").read_text()),
    }


@functools.cache
def undisturbed() -> dict[str, Any]:
    """The outputs of one run that nothing disturbed: made once per test session, shared."""
    folder = Path(tempfile.mkdtemp(prefix="musicrep-undisturbed-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    pipeline = write_pipeline(folder, "undisturbed")
    result = run("run", pipeline)
    assert result.returncode == 0, result.stderr
    return outputs(run_dir(pipeline))


def assert_same_outputs(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Bit for bit: weights, training log, every array and attribute of the store, probe results."""
    assert a["weights"].keys() == b["weights"].keys()
    for name in a["weights"]:
        assert torch.equal(a["weights"][name], b["weights"][name]), name
    assert a["key"] == b["key"]
    assert a["log"] == b["log"]
    assert a["store"].keys() == b["store"].keys()
    for name, value in a["store"].items():
        other = b["store"][name]
        if isinstance(value, np.ndarray):
            assert value.dtype == other.dtype and value.shape == other.shape, name
            assert np.array_equal(value, other), name
        else:
            assert value == other, name
    assert a["probes"] == b["probes"]
    assert a["results"] == b["results"]
