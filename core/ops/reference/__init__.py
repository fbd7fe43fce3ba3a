"""The ops of ``musicrep.ops`` in plain PyTorch: readable, slow, and the tests' oracle."""
from musicrep.ops.reference.filterbank import mel_filterbank
from musicrep.ops.reference.nt_xent import nt_xent

__all__ = ["mel_filterbank", "nt_xent"]
