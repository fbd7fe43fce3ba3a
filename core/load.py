"""``musicrep.load_model``: one call from a model's name or a musicrep run to a ready model.

A ready model takes waves at its ``sample_rate`` and gives track embeddings (``forward``) or
per-window embeddings with their start times (``timeline``), without autograd and always as
float32 whatever precision it computes in. Everything about the weights is checked before any
audio is touched: a wrong file fails at load time with the file and the tensor named.
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from musicrep.accel import to_device
from musicrep.checkpoint import CheckpointError, read_checkpoint
from musicrep.errors import MusicrepError
from musicrep.model import Embedder
from musicrep.registry import Registry, default_registry
from musicrep.rundir import find_checkpoint, run_of_checkpoint

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
#: override keys that configure the windowing rather than the encoder
EMBEDDER_KEYS = ("window", "hop", "pooling", "windowing")


class ReadyModel(nn.Module):
    """A frozen-use Embedder: waves ``[B, T]`` in, float32 embeddings out, no autograd.

    ``precision="bf16"`` runs the encoder under autocast (the front end stays float32, since
    log-mel in bfloat16 loses the detail the encoder reads). ``.embedder`` is the underlying
    trainable Embedder. Its weights take the layout that is fastest on the device they are on when
    it is made (``musicrep.accel.to_device``; moved later, call that again).
    """

    def __init__(self, embedder: Embedder, precision: str = "fp32") -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        device = next(embedder.parameters(), torch.empty(0)).device
        self.embedder, self.precision = to_device(embedder, device).eval(), precision

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


def check_state_dict(file: Path, expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], *,
                     model: str, hint: str = "", name: Callable[[str], str] = str) -> None:
    """Refuse weights ``found`` in ``file`` that do not fit the state dict ``expected``.

    Each message names the file and the tensor (``name`` maps a state-dict key to the name the
    user's file spells it with); ``model`` says what needs the shape, ``hint`` what the file
    probably is instead. Checked before loading, so a wrong file never half-loads.
    """
    for key, target in expected.items():
        if key not in found:
            raise MusicrepError(f"{file}: tensor '{name(key)}' is missing{hint}")
        if tuple(found[key].shape) != tuple(target.shape):
            raise MusicrepError(f"{file}: tensor '{name(key)}' has shape {tuple(found[key].shape)}, {model} "
                                f"needs {tuple(target.shape)}")
    unexpected = [key for key in found if key not in expected]
    if unexpected:
        raise MusicrepError(f"{file}: unexpected tensor '{name(unexpected[0])}'{hint}")


def ready_models(registry: Registry | None = None) -> dict[str, Any]:
    """``{name: ComponentInfo}`` of the ready-made models the installed plugins offer."""
    return (registry or default_registry()).components("model")


# -- musicrep runs -------------------------------------------------------------------------------

def run_embed_settings(checkpoint: Path) -> dict[str, Any]:
    """The windowing (window, hop, pooling, windowing) of the run that wrote ``checkpoint``, read
    from its pipeline.toml through the same ``[embed]`` spec (and defaults) the run used."""
    from musicrep.config import build_config
    from musicrep.pipeline.spec import EmbedSection

    run = run_of_checkpoint(checkpoint)
    if run is None or not run.is_run():
        return {}
    try:
        saved = run.saved_embed_settings()
    except UnicodeDecodeError as exc:
        raise MusicrepError(f"{run.pipeline}: cannot read the run's settings (not UTF-8 text, byte "
                            f"{exc.start})") from None
    embed = build_config(EmbedSection, saved, file=str(run.pipeline), section="embed")
    return {key: getattr(embed, key) for key in EMBEDDER_KEYS}


def rebuild_component(checkpoint: Path, kind: str, name: str, options: dict[str, Any]) -> Any:
    """The ``kind`` named in ``checkpoint``'s description: a registered component only, and never
    one that imports code by name (a checkpoint is someone else's file; only the user's own TOML
    may ask for an import)."""
    try:
        info = default_registry().info(kind, name)
        if info.imports_code:
            raise CheckpointError(f"{checkpoint}: refused: its {kind} '{name}' imports Python code by name, "
                                  "which only your own pipeline TOML may ask for")
        if not all(isinstance(key, str) for key in options):
            raise MusicrepError(f"the {kind} options are not a table of names")
        return info.create(**options)
    except CheckpointError:
        raise
    except MusicrepError as exc:  # e.g. the plugin that provided it is no longer installed
        raise MusicrepError(f"{checkpoint}: cannot rebuild its {kind}: {exc}") from None


def from_run(path: Path, overrides: dict[str, Any]) -> Embedder:
    checkpoint = find_checkpoint(path)
    state = read_checkpoint(checkpoint)
    if not isinstance(state, dict) or not {"embedder", "description"} <= set(state):
        raise MusicrepError(f"{checkpoint}: not a musicrep pre-training checkpoint (needs 'embedder' and "
                            "'description')")
    description = state["description"]
    embed_options, encoder_options = split_overrides(overrides)
    parts = {}
    for kind, extra in (("frontend", {}), ("encoder", encoder_options)):
        options = description.get(kind) if isinstance(description, dict) else None
        options = dict(options) if isinstance(options, dict) else {}
        name = options.pop("type", None)
        if not isinstance(name, str):
            raise MusicrepError(f"{checkpoint}: the checkpoint does not say which {kind} it was trained with")
        parts[kind] = rebuild_component(checkpoint, kind, name, {**options, **extra})
    embedder = Embedder(parts["frontend"], parts["encoder"], **{**run_embed_settings(checkpoint), **embed_options})
    check_state_dict(checkpoint, embedder.state_dict(), state["embedder"], model="the model described")
    embedder.load_state_dict(state["embedder"])
    return embedder


def load_model(name_or_checkpoint: str | Path, *, weights: str | Path | None = None, precision: str = "fp32",
               **overrides: Any) -> ReadyModel:
    """A ready model: one a plugin offers by name (e.g. ``"mule"``: random init, or ``weights`` = a
    MULE checkpoint; ``"NAME:PATH"`` is ``NAME`` with ``weights=PATH``, e.g. ``"hf:DIR"``, a Hugging
    Face folder), or a musicrep run or checkpoint.

    ``overrides``: ``window``, ``hop`` (seconds), ``pooling``, ``windowing`` set the windowing;
    any other key is an encoder option (e.g. ``std_floor=0.01``), checked like a TOML key.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    key, named = str(name_or_checkpoint), ready_models()
    prefix, _, path = key.partition(":")
    if key not in named and prefix in named and path:  # "NAME:PATH" is NAME with weights=PATH (e.g. "hf:DIR")
        if weights is not None:
            raise ValueError(f"'{key}' names its weights after the colon; drop weights=")
        key, weights = prefix, path
    if key in named:
        embedder = named[key].factory(None if weights is None else Path(weights), overrides)
    else:
        if weights is not None:
            raise ValueError(f"weights= applies to the named models ({', '.join(named)}); a run or checkpoint "
                             "carries its own")
        path = Path(name_or_checkpoint)
        if not path.exists():
            raise MusicrepError(f"'{key}' is neither a known model ({', '.join(named)}) nor an existing run "
                                "folder or checkpoint")
        embedder = from_run(path, overrides)
    return ReadyModel(embedder, precision)
