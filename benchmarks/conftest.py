"""Benchmarks run with pytest-benchmark: `make bench` (or pytest benchmarks --benchmark-enable)."""
from __future__ import annotations

import pytest
import torch


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device here")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
