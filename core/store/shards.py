"""Extraction under ``torchrun``: each rank embeds every world_size-th missing clip into its own
journal and writes its own segment; the reader joins the segments of every rank (a store is the
union of its segments), so there is no separate join step and no copy."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, TypeVar

T = TypeVar("T")


def journal_folder(root: Path, rank: int = 0, world_size: int = 1) -> Path:
    """The journal one rank writes: ``journal/`` alone, ``journal-rank<r>-of-<w>/`` under torchrun."""
    return root / ("journal" if world_size == 1 else f"journal-rank{rank}-of-{world_size}")


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """This rank's share of ``items``."""
    return list(items[rank::world_size])
