"""Helpers that narrow a built-in probe's kinds for one test."""
from __future__ import annotations

import pytest

from musicrep.plugins.probes import LinearProbe


def restrict_linear_to_regression(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LinearProbe, "kinds", ("regression",))
