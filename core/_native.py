"""Access to the compiled module ``musicrep._C``, with a clear message when it is missing."""
from __future__ import annotations

from types import ModuleType

import torch  # loads libtorch before _C, which links against it

from musicrep.errors import MusicrepError

_module: ModuleType | None = None


def native() -> ModuleType:
    global _module
    if _module is None:
        try:
            from musicrep import _C
        except ImportError as exc:
            raise MusicrepError(
                "musicrep's compiled module musicrep._C is not built or does not match this "
                f"torch ({exc}). Reinstall with: pip install --no-build-isolation -e .") from exc
        import musicrep.ops.registration  # noqa: F401  (fakes and autograd of torch.ops.musicrep)

        _module = _C
    return _module


def native_ops() -> torch._ops._OpNamespace:
    """``torch.ops.musicrep``: the compiled operators (csrc/glue/library.cpp), loaded on first use."""
    native()
    return torch.ops.musicrep


def has_cuda_kernels() -> bool:
    """Whether ``_C`` was built with its CUDA kernels."""
    return bool(native().with_cuda)
