"""Config range checks shared by the augmentations; each error names its key."""
from __future__ import annotations

import math

from musicrep.config import invalid


def probability(key: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise invalid(key, f"must be a probability in [0, 1], got {value}")


def finite(key: str, value: float) -> None:
    if not math.isfinite(value):
        raise invalid(key, f"must be finite, got {value}")


def ordered(low_key: str, low: float, high_key: str, high: float) -> None:
    """``low <= high`` for a range given as two keys (both finite)."""
    finite(low_key, low)
    finite(high_key, high)
    if low > high:
        raise invalid(low_key, f"must not exceed {high_key} ({high}), got {low}")
