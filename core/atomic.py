"""Files that are either complete or absent: write to a temporary sibling, then rename."""
from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any, Iterator

from musicrep.errors import WriteError


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn an OS error raised while writing ``path`` (full disk, read-only folder, file-size
    limit: errors that often carry no file name) into one ``WriteError`` naming ``path``."""
    try:
        yield
    except OSError as exc:
        raise WriteError(path, exc) from None


def _create_temporary(path: Path) -> Path:
    """A new empty file beside ``path``, created as ``open()`` creates files: mode 0666 less the
    umask (``tempfile.mkstemp`` makes 0600 whatever the umask, and the rename keeps that mode)."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name beside {path}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    A crash leaves either the old file or the new one, never a half-written file under
    ``path``; the temporary file is removed on error. An OS error while writing becomes a
    ``WriteError`` naming ``path``.
    """
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = _create_temporary(path)
        try:
            yield tmp_path
            with open(tmp_path, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp_path, path)
        finally:
            if tmp_path.exists():
                tmp_path.unlink()


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
