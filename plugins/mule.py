"""MULE as a ready model (``musicrep.load_model("mule")``, ``[models.x] load = "mule"``): its
recipe, the reader of MULE checkpoints (as the mule-torch port writes them) and their checks.

The front end turns 16 kHz audio into MULE's log-mel: n_fft 2048 with a 400-sample Hann
window centred in the frame, hop 160, reflect padding, power spectrum, 96 HTK mel bands over
0-8 kHz with each filter L2-normalised, compressed as ``log10(10000 x + 1)``. It is plain
PyTorch (an FFT STFT) until the compiled mel op takes over.

A MULE checkpoint (``model.safetensors`` + ``config.json``) names its tensors after the
port's modules; ``translate_key`` maps each name onto the ``sfnfnet`` encoder's.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from musicrep import ops
from musicrep.errors import MusicrepError
from musicrep.hookspecs import Factories, hookimpl
from musicrep.load import check_state_dict, split_overrides
from musicrep.model import Embedder
from musicrep.registry import get_component

#: MULE's front-end settings, named as in a MULE ``config.json``.
MULE_FRONTEND = {"sample_rate": 16000, "n_fft": 2048, "win_length": 400, "hop_length": 160, "n_mels": 96,
                 "fmin": 0.0, "fmax": 8000.0, "htk": True, "mel_norm": 2.0, "power": 2.0, "center": True,
                 "window": "hann", "pad_mode": "reflect", "mag_compression": "log10_nonneg"}
#: MULE's SF-NFNet-F0 and slicing settings in a ``config.json`` that this package reproduces.
MULE_ARCHITECTURE = {"embedding_dim": 1728, "alpha": 0.2, "scaled_activation": "gelu",
                     "weight_standardization": True, "ws_eps": 1e-4, "slice_hop": 200,
                     "look_backward": 150, "look_forward": 150, "standard_normalize": True,
                     "std_floor": 0.01}


# (pattern in a MULE checkpoint, replacement in musicrep's Embedder), applied in order
_RULES = [
    (r"^frontend\.mel_fb$", "frontend.filters"),
    (r"^backbone\.(slow|fast)_stem\.convs\.(\d+)\.", r"encoder.\1.stem.\2."),
    (r"^backbone\.fusions\.(\d+)\.conv1\.", r"encoder.laterals.\1.temporal."),
    (r"^backbone\.fusions\.(\d+)\.conv2\.", r"encoder.laterals.\1.expand."),
    (r"^backbone\.(slow|fast)_stages\.(\d+)\.blocks\.(\d+)\.", r"encoder.\1.stages.\2.\3."),
]
_BLOCK_RULES = [(r"\.convs\.(\d+)\.", None), (r"\.se\.fc1\.", ".se.squeeze."), (r"\.se\.fc2\.", ".se.excite."),
                (r"\.skip_conv\.", ".shortcut.")]
#: tensors a MULE checkpoint may carry that musicrep recomputes (the STFT's DFT matrices)
IGNORED = re.compile(r"^frontend\.stft\.")


def translate_key(key: str) -> str | None:
    """The Embedder state-dict name of a MULE checkpoint tensor; None for ignored tensors."""
    if IGNORED.match(key):
        return None
    out = key
    for pattern, repl in _RULES:
        out = re.sub(pattern, repl, out)
    if ".stages." in out:
        for pattern, repl in _BLOCK_RULES:
            if repl is None:  # convs.0..3 -> conv1..conv4
                out = re.sub(pattern, lambda m: f".conv{int(m.group(1)) + 1}.", out)
            else:
                out = re.sub(pattern, repl, out)
    return out


_INVERSE = [
    (r"^frontend\.filters$", "frontend.mel_fb"),
    (r"^encoder\.(slow|fast)\.stem\.(\d+)\.", r"backbone.\1_stem.convs.\2."),
    (r"^encoder\.laterals\.(\d+)\.temporal\.", r"backbone.fusions.\1.conv1."),
    (r"^encoder\.laterals\.(\d+)\.expand\.", r"backbone.fusions.\1.conv2."),
    (r"^encoder\.(slow|fast)\.stages\.(\d+)\.(\d+)\.", r"backbone.\1_stages.\2.blocks.\3."),
    (r"\.se\.squeeze\.", ".se.fc1."), (r"\.se\.excite\.", ".se.fc2."), (r"\.shortcut\.", ".skip_conv."),
]


def mule_key(key: str) -> str:
    """The MULE checkpoint name of an Embedder tensor (``translate_key``'s inverse), for messages."""
    out = re.sub(r"\.conv([1-4])\.", lambda m: f".convs.{int(m.group(1)) - 1}.", key) if ".stages." in key else key
    for pattern, repl in _INVERSE:
        out = re.sub(pattern, repl, out)
    return out


def config_mismatch(config: dict[str, Any]) -> str | None:
    """The first ``config.json`` setting that differs from what musicrep's MULE recipe runs."""
    for key, expected in {**MULE_FRONTEND, **MULE_ARCHITECTURE}.items():
        if key in config and config[key] != expected:
            return f"'{key}' is {config[key]!r}, musicrep's MULE recipe needs {expected!r}"
    return None


# -- the ready model -----------------------------------------------------------------------------

def mule(weights: Path | None, overrides: dict[str, Any]) -> Embedder:
    """MULE: its log-mel, SF-NFNet-F0, 3 s windows centred every 2 s, mean pooling."""
    embed_options, encoder_options = split_overrides(overrides)
    encoder = get_component("encoder", "sfnfnet", **{"preset": "f0", **encoder_options})
    embedder = Embedder(get_component("frontend", "mule-mel"), encoder,
                        **{"window": 3.0, "hop": 2.0, "pooling": "mean", "windowing": "centered", **embed_options})
    if weights is not None:
        load_mule_weights(embedder, weights)
    return embedder


def read_mule_files(path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """The weights file and its tensors; checks ``config.json`` first where there is one."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if path.is_dir():
        weights_file, config_file = path / "model.safetensors", path / "config.json"
        for needed in (weights_file, config_file):
            if not needed.is_file():
                raise MusicrepError(f"{needed}: missing; a MULE weights folder holds model.safetensors "
                                    "and config.json")
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise MusicrepError(f"{config_file}: not readable JSON ({exc})") from None
        except RecursionError:
            raise MusicrepError(f"{config_file}: not readable JSON (nested too deeply)") from None
        if not isinstance(config, dict):
            raise MusicrepError(f"{config_file}: expected a JSON object of MULE settings")
        problem = config_mismatch(config)
        if problem:
            raise MusicrepError(f"{config_file}: describes another model: {problem}")
    elif path.is_file():
        weights_file = path
    else:
        raise MusicrepError(f"{path}: no such file or folder (MULE weights: a folder with model.safetensors "
                            "and config.json, or the .safetensors file)")
    try:
        return weights_file, load_file(str(weights_file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise MusicrepError(f"{weights_file}: not a readable safetensors file ({exc})") from None


def load_mule_weights(embedder: Embedder, path: Path) -> None:
    """Load a MULE checkpoint (mule-torch's layout) into ``embedder``, every tensor checked."""
    weights_file, tensors = read_mule_files(path)
    translated: dict[str, torch.Tensor] = {}
    theirs: dict[str, str] = {}
    for name, tensor in tensors.items():
        ours = translate_key(name)
        if ours is not None:
            translated[ours], theirs[ours] = tensor, name
    if "frontend.filters" in translated:
        check_mule_filters(weights_file, theirs["frontend.filters"], translated.pop("frontend.filters"))
    check_state_dict(weights_file, embedder.state_dict(), translated, model="MULE's SF-NFNet-F0",
                     hint=" (not a MULE SF-NFNet-F0 checkpoint?)", name=lambda key: theirs.get(key) or mule_key(key))
    embedder.load_state_dict(translated, strict=False)


def check_mule_filters(weights_file: Path, name: str, filters: torch.Tensor) -> None:
    """A checkpoint's mel filter bank must be MULE's: the compiled front end computes its own."""
    ours = ops.mel_filterbank(16000, 2048, 96, 0.0, 8000.0, mel_scale="htk", norm=2.0, dtype=torch.float64)
    if tuple(filters.shape) != tuple(ours.shape) or not torch.allclose(filters.double(), ours, rtol=1e-4,
                                                                         atol=1e-6):
        raise MusicrepError(f"{weights_file}: tensor '{name}' is not MULE's mel filter bank (96 HTK bands, "
                            "0-8 kHz, unit L2)")


@hookimpl
def musicrep_models() -> Factories:
    return {"mule": mule}
