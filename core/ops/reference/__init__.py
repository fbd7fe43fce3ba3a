"""The ops of ``musicrep.ops`` in plain PyTorch: readable, slow, and the tests' oracle."""
from musicrep.ops.reference.filterbank import mel_filterbank
from musicrep.ops.reference.mel import mel_spectrogram
from musicrep.ops.reference.nt_xent import nt_xent
from musicrep.ops.reference.resample import resample_shift

__all__ = ["mel_filterbank", "mel_spectrogram", "nt_xent", "resample_shift"]
