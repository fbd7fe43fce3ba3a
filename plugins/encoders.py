"""Built-in encoders (filled in by their issue)."""
from __future__ import annotations

from musicrep.hookspecs import Factories, hookimpl


@hookimpl
def musicrep_encoders() -> Factories:
    return {}
