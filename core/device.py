"""Choosing the device a run uses."""
from __future__ import annotations

import torch

from musicrep.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' asked for, but this machine has no CUDA device",
                          section="run", key="device")
    return device
