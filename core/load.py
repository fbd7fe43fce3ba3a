"""``musicrep.load_model``: one call from a model's name or a musicrep run to a ready model.

A ready model takes mono clips at its ``sample_rate`` (a list of any lengths, or ``[B, T]`` with
``lengths``) and gives track embeddings (``forward``) or per-window embeddings with their start
times (``timeline``), without autograd and always as float32 whatever precision it computes in. Everything about the weights is checked before any
audio is touched: a wrong file fails at load time with the file and the tensor named.
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

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
    """A frozen-use Embedder: mono clips in, float32 embeddings out, no autograd.

    ``forward`` takes a list of 1-D clips of any lengths, or ``[B, T]`` (with ``lengths`` when
    its rows are zero-padded clips), and embeds every clip as extraction does: each through
    ``Embedder.track_windows`` on its own samples only, so no window of padding enters its mean
    and a clip embeds the same in any batch as alone. The embeddings are ordinary tensors (the
    work runs under ``torch.inference_mode``; what is returned is copied out of it), so they can
    feed a model that is trained: ``head(model(clips)).sum().backward()`` works.

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

    def _encode(self, windows: torch.Tensor, max_windows: int | None) -> torch.Tensor:
        """``[N, F, width]`` windows -> ``[N, D]`` float32, ``max_windows`` at a time."""
        step = max_windows or max(len(windows), 1)
        with self._autocast(windows.device):
            return torch.cat([self.embedder.encoder(windows[i:i + step]).float()
                              for i in range(0, len(windows), step)])

    def timeline(self, wave: torch.Tensor, max_windows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips of one length ``[B, T]`` -> window embeddings ``[B, W, D]`` and window start times (s).

        ``max_windows`` bounds how many windows the encoder sees at once (memory for long audio).
        """
        clips = self._clips(wave, None)
        if len({len(c) for c in clips}) > 1:
            raise ValueError("timeline takes clips of one length ([B, T]); embed clips of different "
                             "lengths one at a time")
        with torch.inference_mode():
            per_clip = [self.embedder.track_windows(c) for c in clips]
            embeddings = self._encode(torch.cat([w for w, _ in per_clip]), max_windows)
            embeddings = embeddings.view(len(clips), len(per_clip[0][0]), -1)
        return embeddings.clone(), per_clip[0][1].clone()  # ordinary tensors, out of inference mode

    def forward(self, clips: torch.Tensor | Sequence[torch.Tensor],
                lengths: torch.Tensor | Sequence[int] | None = None, max_windows: int | None = None) -> torch.Tensor:
        """Clips (a list of ``[T_i]``, or ``[B, T]`` whose row ``i`` holds ``lengths[i]`` samples and
        padding after them) -> track embeddings ``[B, D]``: each the pooled embeddings of its own
        windows, the same whatever else is in the batch."""
        clips = self._clips(clips, lengths)
        with torch.inference_mode():
            per_clip = [self.embedder.track_windows(c)[0] for c in clips]
            embeddings = self._encode(torch.cat(per_clip), max_windows)
            pooled = torch.stack([self.embedder.pool(e) for e in embeddings.split([len(w) for w in per_clip])])
        return pooled.clone()  # an ordinary tensor, out of inference mode

    def _clips(self, clips: object, lengths: object) -> list[torch.Tensor]:
        """The clips as 1-D float32 tensors of their own lengths, each checked."""
        rate = self.sample_rate
        stereo_hint = (f"the model takes mono clips at {rate} Hz: mix and resample with "
                       f"musicrep.audio.load(path, {rate})")
        if isinstance(clips, torch.Tensor):
            if clips.dim() == 1:
                clips = clips[None]
            if clips.dim() != 2:
                raise ValueError(f"got clips of shape {tuple(clips.shape)}: {stereo_hint}")
            if clips.shape[-1] <= 2 < clips.shape[0]:
                raise ValueError(f"got shape {tuple(clips.shape)}, which looks like (samples, channels): "
                                 f"{stereo_hint}")
            rows = list(clips)
        elif isinstance(clips, Sequence) and not isinstance(clips, (str, bytes)):
            if lengths is not None:
                raise ValueError("lengths applies to a padded [B, T] tensor; a list of clips carries its own")
            rows = list(clips)
            for i, c in enumerate(rows):
                if not isinstance(c, torch.Tensor):
                    raise ValueError(f"clip {i} is a {type(c).__name__}, not a torch.Tensor")
                if c.dim() != 1:
                    raise ValueError(f"clip {i} has shape {tuple(c.shape)}, not [T]: {stereo_hint}")
        else:
            raise ValueError(f"clips must be a [B, T] tensor or a list of [T] tensors, got {type(clips).__name__}")
        if not rows:
            raise ValueError("no clips to embed")
        if lengths is not None:
            counts = [int(n) for n in (lengths.tolist() if isinstance(lengths, torch.Tensor) else lengths)]
            if len(counts) != len(rows) or any(not 0 < n <= len(rows[0]) for n in counts):
                raise ValueError(f"lengths must hold one count in [1, {len(rows[0])}] per row ({len(rows)}), "
                                 f"got {counts}")
            rows = [r[:n] for r, n in zip(rows, counts)]
        for i, r in enumerate(rows):
            if len(r) == 0:
                raise ValueError(f"clip {i} is empty")
        return [r.float() for r in rows]


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
