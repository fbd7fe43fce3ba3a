"""``musicrep.load_model``: one call from a name, a MULE checkpoint or a musicrep run to a ready model.

A ready model takes waves at its ``sample_rate`` and gives track embeddings (``forward``) or
per-window embeddings with their start times (``timeline``), without autograd and always as
float32 whatever precision it computes in. Everything about the weights is checked before any
audio is touched: a wrong file fails at load time with the file and the tensor named.
"""
from __future__ import annotations

import json
import tomllib
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from musicrep import ops
from musicrep.errors import MusicrepError
from musicrep.model import Embedder
from musicrep.registry import get_component

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
#: override keys that configure the windowing rather than the encoder
EMBEDDER_KEYS = ("window", "hop", "pooling", "windowing")


class ReadyModel(nn.Module):
    """A frozen-use Embedder: waves ``[B, T]`` in, float32 embeddings out, no autograd.

    ``precision="bf16"`` runs the encoder under autocast (the front end stays float32, since
    log-mel in bfloat16 loses the detail the encoder reads). ``.embedder`` is the underlying
    trainable Embedder.
    """

    def __init__(self, embedder: Embedder, precision: str = "fp32") -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.embedder, self.precision = embedder.eval(), precision

    @property
    def sample_rate(self) -> int:
        return self.embedder.sample_rate

    @property
    def dim(self) -> int:
        return self.embedder.dim

    def train(self, mode: bool = True) -> "ReadyModel":
        if mode:
            raise RuntimeError("a ready model is for inference; train its .embedder instead")
        return super().train(False)

    def _autocast(self, device: torch.device):
        dtype = PRECISIONS[self.precision]
        if dtype is None or not torch.amp.is_autocast_available(device.type):
            return nullcontext()
        return torch.autocast(device.type, dtype=dtype)

    @torch.inference_mode()
    def timeline(self, wave: torch.Tensor, max_windows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Waves ``[B, T]`` -> window embeddings ``[B, W, D]`` and window start times (s).

        ``max_windows`` bounds how many windows the encoder sees at once (memory for long audio).
        """
        windows, offsets = self.embedder.windows(wave.float())
        b, w = windows.shape[:2]
        flat = windows.flatten(0, 1)
        step = max_windows or len(flat)
        with self._autocast(windows.device):
            embeddings = torch.cat([self.embedder.encoder(flat[i:i + step]).float()
                                    for i in range(0, len(flat), step)])
        return embeddings.view(b, w, -1), offsets

    @torch.inference_mode()
    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Waves ``[B, T]`` -> track embeddings ``[B, D]`` (the pooled timeline)."""
        return self.embedder.pool(self.timeline(wave)[0])


def split_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    embedder = {k: v for k, v in overrides.items() if k in EMBEDDER_KEYS}
    return embedder, {k: v for k, v in overrides.items() if k not in EMBEDDER_KEYS}


# -- MULE ----------------------------------------------------------------------------------------

def mule(weights: str | Path | None, overrides: dict[str, Any]) -> Embedder:
    """MULE: its log-mel, SF-NFNet-F0, 3 s windows centred every 2 s, mean pooling."""
    embed_options, encoder_options = split_overrides(overrides)
    encoder = get_component("encoder", "sfnfnet", **{"preset": "f0", **encoder_options})
    embedder = Embedder(get_component("frontend", "mule-mel"), encoder, **{"window": 3.0, "hop": 2.0, "pooling": "mean",
                                                   "windowing": "centered", **embed_options})
    if weights is not None:
        load_mule_weights(embedder, Path(weights))
    return embedder


def read_mule_files(path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """The weights file and its tensors; checks ``config.json`` first where there is one."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from musicrep.plugins.mule import config_mismatch

    if path.is_dir():
        weights_file, config_file = path / "model.safetensors", path / "config.json"
        for needed in (weights_file, config_file):
            if not needed.is_file():
                raise MusicrepError(f"{needed}: missing; a MULE weights folder holds model.safetensors "
                                    "and config.json")
        try:
            config = json.loads(config_file.read_text())
        except (OSError, ValueError) as exc:
            raise MusicrepError(f"{config_file}: not readable JSON ({exc})") from None
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
    from musicrep.plugins.mule import mule_key, translate_key

    weights_file, tensors = read_mule_files(path)
    translated: dict[str, tuple[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        ours = translate_key(name)
        if ours is not None:
            translated[ours] = (name, tensor)
    check_mule_filters(weights_file, translated.pop("frontend.filters", None))
    expected = embedder.state_dict()
    for key, target in expected.items():
        if key not in translated:
            raise MusicrepError(f"{weights_file}: tensor '{mule_key(key)}' is missing (not a MULE SF-NFNet-F0 "
                                "checkpoint?)")
        name, tensor = translated[key]
        if tuple(tensor.shape) != tuple(target.shape):
            raise MusicrepError(f"{weights_file}: tensor '{name}' has shape {tuple(tensor.shape)}, MULE's "
                                f"SF-NFNet-F0 needs {tuple(target.shape)}")
    unexpected = [name for key, (name, _) in translated.items() if key not in expected]
    if unexpected:
        raise MusicrepError(f"{weights_file}: unexpected tensor '{unexpected[0]}' (not a MULE SF-NFNet-F0 "
                            "checkpoint?)")
    embedder.load_state_dict({k: t for k, (_, t) in translated.items()}, strict=False)


def check_mule_filters(weights_file: Path, found: tuple[str, torch.Tensor] | None) -> None:
    """A checkpoint's mel filter bank must be MULE's: the compiled front end computes its own."""
    if found is None:
        return
    name, filters = found
    ours = ops.mel_filterbank(16000, 2048, 96, 0.0, 8000.0, mel_scale="htk", norm=2.0, dtype=torch.float64)
    if tuple(filters.shape) != tuple(ours.shape) or not torch.allclose(filters.double(), ours, rtol=1e-4,
                                                                         atol=1e-6):
        raise MusicrepError(f"{weights_file}: tensor '{name}' is not MULE's mel filter bank (96 HTK bands, "
                            "0-8 kHz, unit L2)")


RECIPES: dict[str, Callable[[str | Path | None, dict[str, Any]], Embedder]] = {"mule": mule}


# -- musicrep runs -------------------------------------------------------------------------------

def find_checkpoint(path: Path) -> Path:
    """``final.pt`` itself, a ``RUN_DIR/models/<model>`` folder, or a run with one pre-trained model."""
    if path.is_file():
        return path
    if (path / "final.pt").is_file():
        return path / "final.pt"
    found = sorted((path / "models").glob("*/final.pt")) if path.is_dir() else []
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(p.parent.name for p in found)
        raise MusicrepError(f"{path}: the run has several pre-trained models ({names}); "
                            f"pass {path / 'models' / found[0].parent.name} to choose one")
    raise MusicrepError(f"{path}: no pre-trained model here (looked for final.pt and models/*/final.pt)")


def run_embed_settings(checkpoint: Path) -> dict[str, Any]:
    """The window, hop and pooling of the run that wrote ``checkpoint`` (its pipeline.toml)."""
    run_dir = checkpoint.parent.parent.parent if checkpoint.parent.parent.name == "models" else None
    toml = run_dir / "pipeline.toml" if run_dir else None
    if toml is None or not toml.is_file():
        return {}
    try:
        embed = tomllib.loads(toml.read_text()).get("embed", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise MusicrepError(f"{toml}: cannot read the run's settings ({exc})") from None
    return {k: embed[k] for k in ("window", "hop", "pooling") if k in embed}


def from_run(path: Path, overrides: dict[str, Any]) -> Embedder:
    checkpoint = find_checkpoint(path)
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except Exception as exc:  # a torn or foreign file: say which, whatever pickle raised
        raise MusicrepError(f"{checkpoint}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or not {"embedder", "description"} <= set(state):
        raise MusicrepError(f"{checkpoint}: not a musicrep pre-training checkpoint (needs 'embedder' and "
                            "'description')")
    description = state["description"]
    embed_options, encoder_options = split_overrides(overrides)
    parts = {}
    for kind, extra in (("frontend", {}), ("encoder", encoder_options)):
        options = dict(description.get(kind) or {}) if isinstance(description, dict) else {}
        if "type" not in options:
            raise MusicrepError(f"{checkpoint}: the checkpoint does not say which {kind} it was trained with")
        try:
            parts[kind] = get_component(kind, options.pop("type"), **{**options, **extra})
        except MusicrepError as exc:  # e.g. the plugin that provided it is no longer installed
            raise MusicrepError(f"{checkpoint}: cannot rebuild its {kind}: {exc}") from None
    embedder = Embedder(parts["frontend"], parts["encoder"], **{**run_embed_settings(checkpoint), **embed_options})
    expected, saved = embedder.state_dict(), state["embedder"]
    for key, target in expected.items():
        if key not in saved:
            raise MusicrepError(f"{checkpoint}: tensor missing for {key}")
        if tuple(saved[key].shape) != tuple(target.shape):
            raise MusicrepError(f"{checkpoint}: tensor '{key}' has shape {tuple(saved[key].shape)}, the model "
                                f"described needs {tuple(target.shape)}")
    extra_keys = [k for k in saved if k not in expected]
    if extra_keys:
        raise MusicrepError(f"{checkpoint}: unexpected tensor '{extra_keys[0]}'")
    embedder.load_state_dict(saved)
    return embedder


def load_model(name_or_checkpoint: str | Path, *, weights: str | Path | None = None, precision: str = "fp32",
               **overrides: Any) -> ReadyModel:
    """A ready model: ``"mule"`` (random init, or ``weights`` = a MULE checkpoint), or a musicrep run.

    ``overrides``: ``window``, ``hop`` (seconds), ``pooling``, ``windowing`` set the windowing;
    any other key is an encoder option (e.g. ``channels_last=False``), checked like a TOML key.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    key = str(name_or_checkpoint)
    if key in RECIPES:
        embedder = RECIPES[key](weights, overrides)
    else:
        if weights is not None:
            raise ValueError(f"weights= applies to the named models ({', '.join(RECIPES)}); a run or checkpoint "
                             "carries its own")
        path = Path(name_or_checkpoint)
        if not path.exists():
            raise MusicrepError(f"'{key}' is neither a known model ({', '.join(RECIPES)}) nor an existing run "
                                "folder or checkpoint")
        embedder = from_run(path, overrides)
    return ReadyModel(embedder, precision)
