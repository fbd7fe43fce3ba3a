"""The ops of ``musicrep.ops`` in plain PyTorch: readable, slow, and the tests' oracle."""
from musicrep.ops.reference.filterbank import mel_filterbank
from musicrep.ops.reference.mel import mel_spectrogram

__all__ = ["mel_filterbank", "mel_spectrogram"]
