"""Compiled ops (``musicrep._C``), on the CPU or CUDA by the input tensor's device.

Each op has a plain-PyTorch twin in ``musicrep.ops.reference`` that the tests compare against.
"""
from musicrep.ops.filterbank import mel_filterbank
from musicrep.ops.nt_xent import nt_xent

__all__ = ["mel_filterbank", "nt_xent"]
