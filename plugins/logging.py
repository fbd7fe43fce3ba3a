"""Training logs through the lifecycle hooks: metrics per step to JSONL, and to TensorBoard
when it is installed."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from musicrep import atomic
from musicrep.hookspecs import hookimpl
from musicrep.rundir import ModelDir

_writers: dict[str, Any] = {}


def _tensorboard(run_dir: str) -> Any:
    if run_dir not in _writers:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            _writers[run_dir] = None
        else:
            _writers[run_dir] = SummaryWriter(str(Path(run_dir) / "tensorboard"))
    return _writers[run_dir]


def _step(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):  # the line a killed run was writing
        return None


@hookimpl
def musicrep_on_train_start(run_dir: str, start_step: int, steps: int) -> None:
    """A resumed run drops the log lines of steps after its checkpoint (they are redone) and
    the torn line a kill may have left; the log is rewritten atomically."""
    path = ModelDir(Path(run_dir)).training_log
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines()
            if (step := _step(line)) is not None and step <= start_step]
    atomic.write_text(path, "".join(line + "\n" for line in kept))


@hookimpl
def musicrep_on_train_step(step: int, metrics: dict[str, float], run_dir: str) -> None:
    path = ModelDir(Path(run_dir)).training_log
    with atomic.writing(path), open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"step": step, **metrics}) + "\n")
    writer = _tensorboard(run_dir)
    if writer is not None:
        for name, value in metrics.items():
            writer.add_scalar(f"pretrain/{name}", value, step)
