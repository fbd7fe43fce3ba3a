"""musicrep's checkpoint files: written atomically, read weights-only.

Checkpoints are what users share, so reading one must never run code: ``torch.load`` with
``weights_only=True`` accepts tensors and plain data (dicts, lists, strings, numbers) and refuses
any other object a pickle names, before creating it. Everything musicrep saves is such data.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from musicrep import atomic
from musicrep.errors import MusicrepError, WriteError


class CheckpointError(MusicrepError):
    """A checkpoint that cannot be read whole, or that is refused because loading it could run code."""


def read_checkpoint(path: Path, device: torch.device | str = "cpu") -> Any:
    """The contents of the checkpoint at ``path``, weights-only; raises ``CheckpointError`` naming it."""
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
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
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
