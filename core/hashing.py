"""Content hashes: a stage's cache key is the hash of its config and its inputs' hashes."""
from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

import torch


def config_hash(data: Any) -> str:
    """A short stable hash of plain data (dicts, lists, numbers, strings)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def state_hash(state: Mapping[str, torch.Tensor]) -> str:
    """A hash of a module's parameters and buffers: names, shapes, dtypes and bytes."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:16]
