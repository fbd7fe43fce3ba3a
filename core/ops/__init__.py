"""Compiled ops (``musicrep._C``), on the CPU or CUDA by the input tensor's device.

Each op has a plain-PyTorch twin in ``musicrep.ops.reference`` that the tests compare against.
"""
from musicrep.ops.filterbank import mel_filterbank
from musicrep.ops.mel import mel_spectrogram
from musicrep.ops.nt_xent import nt_xent
from musicrep.ops.resample import resample_shift

__all__ = ["mel_filterbank", "mel_spectrogram", "nt_xent", "resample_shift"]
