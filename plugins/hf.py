"""Hugging Face audio models from a local folder as ready models: ``musicrep.load_model("hf:PATH")``,
``[models.x] load = "hf:PATH"``.

The folder is what ``save_pretrained`` (or ``huggingface-cli download``) writes: ``config.json``,
``preprocessor_config.json`` and the weights. It is read with no network (``local_files_only``,
``HF_HUB_OFFLINE=1``). The model takes raw audio, so it is paired with the ``waveform`` front end at
its feature extractor's ``sampling_rate`` (the run resamples to it) and the Embedder cuts windows of
samples as it cuts windows of frames; ``HFEncoder`` runs the feature extractor on each window
(wav2vec 2.0 / HuBERT / data2vec-audio / MERT: normalised waves; AST: filter banks; Whisper:
log-mel, its encoder only) and offers every hidden state as a layer (``layer0``, the embeddings
before the first transformer block, to ``layerN``), each pooled over time; ``out`` is the last
hidden state's mean over time.

Safe by default, since a folder may come from anywhere: weights are read from ``.safetensors``
only unless ``allow_pickle`` is set, and a folder whose config asks for its own code (``auto_map``,
as MERT's does) is refused unless ``trust_remote_code`` is set. Both are set only by the user: as
keywords of ``musicrep.load_model`` or keys of their own TOML's ``[models.x]`` table; nothing read
from a folder, checkpoint or run turns them on.
"""
from __future__ import annotations

import json
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from musicrep.errors import MusicrepError
from musicrep.hookspecs import Factories, hookimpl
from musicrep.layers import OUT
from musicrep.load import split_overrides
from musicrep.model import Embedder
from musicrep.registry import get_component

#: what to install for ``hf:`` models
EXTRA_HINT = 'Hugging Face models need the transformers package: pip install "musicrep[hf]"'
#: the user's switches (never read from the folder)
SWITCHES = ("trust_remote_code", "allow_pickle")
#: weights files that are pickles: reading one can run code
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
#: how much larger than its weights files a config's model may be before it is refused (bytes
#: per weight byte): a config.json that asks for a huge model must not allocate it
SIZE_SLACK, SIZE_FLOOR = 1.5, 1 << 20
#: bounds that keep a hostile settings file from making transformers allocate or loop without
#: end before anything is checked: the files' size, any list's length, the number of layers (the
#: model is first built on the meta device, where only its module count costs), any other integer
#: of config.json (some models allocate a vector of ``hidden_size`` on the CPU whatever the
#: device; the largest sizes of public audio models, vocabularies included, are below 2**17), and
#: the feature extractor settings that size its arrays (a mel filter bank is n_fft / 2 x bands)
MAX_SETTINGS_BYTES, MAX_LIST, MAX_LAYERS, MAX_CONFIG_INT = 1 << 20, 256, 512, 1 << 17
EXTRACTOR_BOUNDS = {"feature_size": 1024, "num_mel_bins": 1024, "n_fft": 1 << 15, "win_length": 1 << 15,
                    "hop_length": 1 << 15, "chunk_length": 3600, "max_length": 1 << 20, "n_samples": 3600 * 384000,
                    "nb_max_frames": 1 << 20}


def require_transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise MusicrepError(EXTRA_HINT) from None
    return transformers


@contextmanager
def offline() -> Iterator[None]:
    """No network for the Hugging Face libraries while a folder is read; transformers' warnings and
    progress bars quiet."""
    before = {key: os.environ.get(key) for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    logging = require_transformers().utils.logging
    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def read_json_object(file: Path) -> dict[str, Any]:
    """A folder's JSON settings file, as a dict, or one line naming the file."""
    if not file.is_file():
        raise MusicrepError(f"{file}: missing; a Hugging Face model folder holds config.json, "
                            "preprocessor_config.json and the weights (model.safetensors)")
    if file.stat().st_size > MAX_SETTINGS_BYTES:
        raise MusicrepError(f"{file}: {file.stat().st_size} bytes, too large for a settings file (at most "
                            f"{MAX_SETTINGS_BYTES})")
    try:
        value = json.loads(file.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise MusicrepError(f"{file}: not readable JSON ({type(exc).__name__}: {first_line(exc)})") from None
    if not isinstance(value, dict):
        raise MusicrepError(f"{file}: expected a JSON object of settings, got {type(value).__name__}")
    return value


def check_bounds(file: Path, settings: dict[str, Any], bounds: dict[str, int], default: int | None = None) -> None:
    """Refuse sizes no audio model has before transformers builds anything from them."""
    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict):
            for inner, item in value.items():
                walk(item, str(inner))
        elif isinstance(value, list):
            if len(value) > MAX_LIST:
                raise MusicrepError(f"{file}: {key!r} lists {len(value)} values, more than any audio model "
                                    f"has (at most {MAX_LIST})")
            for item in value:
                walk(item, key)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            bound = bounds.get(key, MAX_LAYERS if "layers" in key else None)
            if bound is not None and not 0 <= value <= bound:
                raise MusicrepError(f"{file}: {key!r} is {value}, beyond any audio model (0 to {bound})")
            if bound is None and default is not None and isinstance(value, int) and abs(value) > default:
                raise MusicrepError(f"{file}: {key!r} is {value}, beyond any audio model (at most {default} "
                                    "in size)")

    walk(settings, "")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def weight_files(folder: Path, allow_pickle: bool) -> list[Path]:
    """The weights files transformers will read, checked against the user's pickle choice."""
    safe = sorted(folder.glob("*.safetensors"))
    if safe:
        return safe
    pickles = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES and p.is_file())
    if not pickles:
        raise MusicrepError(f"{folder}: no weights (model.safetensors); a Hugging Face model folder holds "
                            "config.json, preprocessor_config.json and model.safetensors")
    if not allow_pickle:
        raise MusicrepError(f"{pickles[0]}: pickle weights can run code when read and are refused; convert them "
                            "to .safetensors, or set allow_pickle = true in your own TOML's [models.x] table "
                            "(allow_pickle=True in Python) if you trust the folder")
    return pickles


def refuse_remote_code(files: dict[Path, dict[str, Any]], trust_remote_code: bool) -> None:
    """A settings file with ``auto_map`` makes transformers import the folder's own .py files."""
    for file, settings in files.items():
        if "auto_map" in settings and not trust_remote_code:
            modules = sorted({repr(str(v).split(".")[0])[1:-1] + ".py" for v in flatten(settings["auto_map"])})
            raise MusicrepError(f"{file}: the model needs code from its folder ({', '.join(modules) or 'auto_map'}), "
                                "refused; set trust_remote_code = true in your own TOML's [models.x] table "
                                "(trust_remote_code=True in Python) only if you trust that code")


def flatten(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [v for item in value.values() for v in flatten(item)]
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in flatten(item)]
    return [value] if value else []


def read_folder(folder: Path, *, trust_remote_code: bool = False,
                allow_pickle: bool = False) -> tuple[nn.Module, Any]:
    """The model (its encoder, for an encoder-decoder) and feature extractor of a Hugging Face
    folder, every file checked: one line naming the file for anything wrong."""
    transformers = require_transformers()
    if not folder.is_dir():
        raise MusicrepError(f"{folder}: no such folder (a Hugging Face model folder: config.json, "
                            "preprocessor_config.json, model.safetensors)")
    config_file, extractor_file = folder / "config.json", folder / "preprocessor_config.json"
    settings = {config_file: read_json_object(config_file), extractor_file: read_json_object(extractor_file)}
    check_bounds(config_file, settings[config_file], {}, MAX_CONFIG_INT)
    check_bounds(extractor_file, settings[extractor_file], EXTRACTOR_BOUNDS)
    refuse_remote_code(settings, trust_remote_code)
    weights = weight_files(folder, allow_pickle)
    trust = {"trust_remote_code": trust_remote_code, "local_files_only": True}
    with offline():
        try:
            config = transformers.AutoConfig.from_pretrained(folder, **trust)
            with torch.device("meta"):  # the size the config asks for, without allocating it
                skeleton = transformers.AutoModel.from_config(config, trust_remote_code=trust_remote_code)
        except Exception as exc:  # whatever a bad config makes transformers (or remote code) raise
            raise MusicrepError(f"{config_file}: not a model configuration transformers can build "
                                f"({type(exc).__name__}: {first_line(exc)})") from None
        needed = sum(t.numel() * t.element_size() for t in (*skeleton.parameters(), *skeleton.buffers()))
        held = sum(f.stat().st_size for f in weights)
        if needed > SIZE_SLACK * held + SIZE_FLOOR:
            raise MusicrepError(f"{config_file}: describes a model of {needed} bytes of parameters, but its weights "
                                f"({', '.join(f.name for f in weights)}) hold {held} bytes")
        try:
            extractor = transformers.AutoFeatureExtractor.from_pretrained(folder, **trust)
        except Exception as exc:
            raise MusicrepError(f"{extractor_file}: not a feature extractor transformers can build "
                                f"({type(exc).__name__}: {first_line(exc)})") from None
        rate = getattr(extractor, "sampling_rate", None)
        if not isinstance(rate, int) or isinstance(rate, bool) or not 1000 <= rate <= 384000:
            raise MusicrepError(f"{extractor_file}: 'sampling_rate' must be an integer rate in Hz, got {rate!r}")
        try:
            model, info = transformers.AutoModel.from_pretrained(
                folder, **trust, use_safetensors=None if allow_pickle else True, output_loading_info=True)
        except Exception as exc:
            raise MusicrepError(f"{weights[0]}: cannot load these weights into the model config.json describes "
                                f"({type(exc).__name__}: {first_line(exc)})") from None
    for problem in ("missing_keys", "mismatched_keys"):
        keys = sorted(map(str, info.get(problem) or ()))
        if keys:
            what = "is missing" if problem == "missing_keys" else "has the wrong shape"
            raise MusicrepError(f"{weights[0]}: tensor {keys[0]!r} {what} for the model config.json describes")
    if getattr(model.config, "is_encoder_decoder", False):  # Whisper: its encoder reads the audio
        model = model.get_encoder()
    for key in ("hidden_size", "num_hidden_layers"):
        value = getattr(model.config, key, None)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise MusicrepError(f"{config_file}: '{key}' must be a positive integer, got {value!r}")
    return model.eval(), extractor


class HFEncoder(nn.Module):
    """A Hugging Face audio model over windows of raw audio ``[B, 1, samples]`` (the waveform
    front end's): its feature extractor, then the model; every hidden state is a layer."""

    def __init__(self, model: nn.Module, extractor: Any) -> None:
        super().__init__()
        self.model = model
        self.__dict__["extractor"] = extractor  # not a module: numpy feature code, no weights
        config = model.config
        self.model_type = str(getattr(config, "model_type", "?"))
        self.sample_rate = int(extractor.sampling_rate)
        self.dim = int(config.hidden_size)
        self.layer_names = tuple(f"layer{i}" for i in range(int(config.num_hidden_layers) + 1))

    def model_inputs(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """The feature extractor's inputs for a batch of windows, on their device."""
        if features.dim() != 3 or features.shape[1] != 1:
            raise ValueError(f"the hf encoder takes raw audio windows [B, 1, samples] from the waveform front end, "
                             f"got shape {tuple(features.shape)}")
        waves = [w.numpy() for w in features[:, 0].detach().float().cpu()]
        batch = self.extractor(waves, sampling_rate=self.sample_rate, return_tensors="pt")
        return {key: value.to(features.device) for key, value in batch.items() if isinstance(value, torch.Tensor)}

    def valid_steps(self, samples: int, steps: int) -> int:
        """The time steps that cover the window's audio: Whisper pads every input to its 30 s."""
        if self.model_type != "whisper":
            return steps
        frames = samples / self.extractor.hop_length
        return max(1, min(steps, math.ceil(frames / 2)))  # its second convolution has stride 2

    def hidden_states(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Each hidden state ``[B, steps, D]``, shallowest first; the last is the model's output."""
        output = self.model(**self.model_inputs(features), output_hidden_states=True)
        states = tuple(output.hidden_states)
        if len(states) != len(self.layer_names):
            raise RuntimeError(f"the {self.model_type} model gave {len(states)} hidden states, its config promises "
                               f"{len(self.layer_names)}")
        states = (*states[:-1], output.last_hidden_state)
        steps = self.valid_steps(features.shape[-1], states[-1].shape[1])
        return tuple(state[:, :steps] for state in states)

    def forward_layers(self, features: torch.Tensor, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """``{name: activation}``: a layer as a sequence ``[B, D, steps]``, ``out`` as ``[B, D]``."""
        states = self.hidden_states(features)
        found = {name: states[int(name[len("layer"):])].transpose(1, 2)
                 for name in names if name != OUT}
        if OUT in names:
            found[OUT] = states[-1].mean(dim=1)
        return found

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Windows ``[B, 1, samples]`` -> ``[B, dim]``: the last hidden state's mean over time."""
        return self.hidden_states(features)[-1].mean(dim=1)


def switch(overrides: dict[str, Any], key: str) -> bool:
    value = overrides.pop(key, False)
    if not isinstance(value, bool):
        raise MusicrepError(f"{key} must be true or false, got {value!r}")
    return value


def hf(weights: Path | None, overrides: dict[str, Any]) -> Embedder:
    """A Hugging Face audio model from a local folder (hf:PATH), every hidden state a layer."""
    if weights is None:
        raise MusicrepError("the hf model reads a Hugging Face folder: name it as 'hf:PATH' "
                            "(musicrep.load_model('hf:PATH'), or load = \"hf:PATH\" in a TOML)")
    options = dict(overrides)
    switches = {key: switch(options, key) for key in SWITCHES}
    embed_options, unknown = split_overrides(options)
    if unknown:
        raise MusicrepError(f"the hf model has no option '{sorted(unknown)[0]}'; it takes the windowing "
                            f"(window, hop, pooling, windowing) and {', '.join(SWITCHES)}")
    model, extractor = read_folder(Path(weights), **switches)
    encoder = HFEncoder(model, extractor)
    frontend = get_component("frontend", "waveform", sample_rate=encoder.sample_rate)
    return Embedder(frontend, encoder, **embed_options)


@hookimpl
def musicrep_models() -> Factories:
    return {"hf": hf}
