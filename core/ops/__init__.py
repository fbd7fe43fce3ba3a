"""Compiled ops, on the CPU or CUDA by the input tensor's device.

Each is a PyTorch operator (``torch.ops.musicrep.*``, csrc/glue/library.cpp) behind a function
here that checks its arguments; importing this package registers the operators (where
``musicrep._C`` is built), so a saved program or TorchScript file that holds them loads after
``import musicrep.ops``. Each op has a plain-PyTorch twin in ``musicrep.ops.reference`` that the
tests compare against.
"""
from musicrep.errors import MusicrepError
from musicrep.ops.filterbank import mel_filterbank
from musicrep.ops.mel import mel_spectrogram
from musicrep.ops.nt_xent import nt_xent
from musicrep.ops.resample import resample_shift

__all__ = ["mel_filterbank", "mel_spectrogram", "nt_xent", "resample_shift"]


def _register() -> None:
    from musicrep._native import native

    try:
        native()
    except MusicrepError:  # not built: each op says so, with the fix, when it is called
        pass


_register()
