"""musicrep's checkpoint files: written atomically, read weights-only.

Checkpoints are what users share, so reading one must never run code: ``torch.load`` with
``weights_only=True`` accepts tensors and plain data (dicts, lists, strings, numbers) and refuses
any other object a pickle names, before creating it. Everything musicrep saves is such data.

Nor may reading one take the machine down: ``torch.save`` writes an uncompressed zip, so its
entries together are never larger than the file. The zip directory is checked before torch
reads a byte of it, and a file whose entries would inflate beyond its own size (a small file
that decompresses to gigabytes) or that is no zip at all (torch's legacy format sizes its
tensors from numbers in the file) is refused in one line.
"""
from __future__ import annotations

import pickle
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch

from musicrep import atomic
from musicrep.errors import MusicrepError, WriteError


class CheckpointError(MusicrepError):
    """A checkpoint that cannot be read whole, or that is refused because loading it could run code."""


#: what reading a damaged or hostile zip can raise, besides OSError
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, struct.error, NotImplementedError,
               OverflowError)


def check_archive(path: Path) -> None:
    """Refuse, before torch reads it, a file that is not a zip or whose entries would inflate
    beyond the file's own size (what ``torch.save`` writes is stored uncompressed)."""
    try:
        size = path.stat().st_size
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"{path}: not a readable checkpoint (not the zip format torch.save "
                                  "writes)")
        with zipfile.ZipFile(path) as archive:
            inflated = sum(entry.file_size for entry in archive.infolist())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: a folder, not a checkpoint file") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except _ZIP_ERRORS as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint (damaged zip: {message})") from None
    if inflated > size:
        raise CheckpointError(f"{path}: refused: its entries inflate to {inflated} bytes from a {size}-byte "
                              "file (torch.save stores them uncompressed)")


def read_checkpoint(path: Path, device: torch.device | str = "cpu") -> Any:
    """The contents of the checkpoint at ``path``, weights-only; raises ``CheckpointError`` naming it."""
    check_archive(Path(path))
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        named = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if named:
            raise CheckpointError(f"{path}: refused: it names {named.group(1)}, and loading it could run code; "
                                  f"musicrep loads only tensors and plain data") from None
        raise CheckpointError(f"{path}: not a readable checkpoint (damaged, or not a weights-only torch "
                              f"checkpoint)") from None
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError, TypeError, IndexError,
            struct.error, OverflowError, RecursionError, NotImplementedError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else ""
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {message})") from None


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write a checkpoint atomically. Through a Python file object, so that a full disk or a size
    limit surfaces as an OS error naming ``path`` (``torch.save`` to a file name raises a
    ``RuntimeError`` from its zip writer that names neither)."""
    with atomic.atomic_path(path) as tmp, open(tmp, "wb") as f:
        try:
            torch.save(state, f)
        except RuntimeError as exc:
            raise WriteError(path, str(exc).splitlines()[0] if str(exc) else "torch.save failed") from None
