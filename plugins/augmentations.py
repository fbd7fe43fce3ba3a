"""Built-in augmentations (filled in by their issue)."""
from __future__ import annotations

from musicrep.hookspecs import Factories, hookimpl


@hookimpl
def musicrep_augmentations() -> Factories:
    return {}
