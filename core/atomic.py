"""Files that are either complete or absent: write to a temporary sibling, then rename."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    A crash leaves either the old file or the new one, never a half-written file under
    ``path``; the temporary file is removed on error.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_leftovers(folder: str | Path) -> list[Path]:
    """Delete the temporary files of writes that a killed process never finished.

    Only safe while nothing else writes under ``folder`` (the pipeline calls it holding the run
    lock); nothing ever reads these files, they only take space (a checkpoint can be large).
    """
    removed = []
    for tmp in sorted(Path(folder).rglob(".*.tmp")) if Path(folder).is_dir() else []:
        if tmp.is_file():
            tmp.unlink()
            removed.append(tmp)
    return removed


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
