"""Shared fixtures: every test makes its own inputs; nothing is downloaded."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture
def rng() -> torch.Generator:
    """A generator with a fresh seed per test: every run draws new inputs."""
    return torch.Generator().manual_seed(torch.seed() % (2**31))

