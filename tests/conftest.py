"""Shared fixtures: every test makes its own inputs; nothing is downloaded."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture
def rng() -> torch.Generator:
    """A generator with a fresh seed per test run, printed on failure by the test's id."""
    return torch.Generator().manual_seed(torch.seed() % (2**31))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device here")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
