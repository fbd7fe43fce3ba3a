"""The pipeline TOML, parsed into typed, validated config before any work starts.

Every component reference is a table with ``type`` (the component's name) and its options,
checked against the component's config dataclass; every error names the file, the section
and the key.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from musicrep.config import build_config, interval, invalid, items, matches, non_negative, positive, unknown_key_message
from musicrep.errors import ConfigError, MusicrepError
from musicrep.layers import LAYER_PATTERN, OUT
from musicrep.rundir import NAME_PATTERN, NAME_RULE, name_problem
from musicrep.registry import Registry, default_registry


@dataclass(frozen=True)
class ComponentRef:
    """A component named in the TOML: its kind, its name and its validated config."""

    kind: str
    name: str
    config: Any
    section: str

    def create(self, registry: Registry | None = None) -> Any:
        return (registry or default_registry()).info(self.kind, self.name).create(self.config)

    def describe(self) -> dict[str, Any]:
        """Plain data identifying this component and its options (for hashes and provenance)."""
        config = dataclasses.asdict(self.config) if dataclasses.is_dataclass(self.config) else {}
        return {"type": self.name, **config}


#: the most worker processes a TOML may start (``num_workers``): four per core this process may use, at
#: least 8; more only queue behind each other and take memory (a TOML asking for 1000 took the machine)
MAX_WORKERS = max(8, 4 * len(os.sched_getaffinity(0)))


def worker_count(default: int | None) -> Any:
    """A ``num_workers`` key: processes, 0 to ``MAX_WORKERS``."""
    return interval(0, MAX_WORKERS, default, what=f"in [0, {MAX_WORKERS}] (at most 4 per core of this machine)")


@dataclass
class RunSection:
    name: str = matches(NAME_PATTERN, f"a name ({NAME_RULE}): it names the run's folder", "run")
    dir: str | None = None
    seed: int = interval(0, 2**32, 0, high_open=True)  # NumPy and scikit-learn take seeds in [0, 2**32)
    #: repeat pre-training and probing once per seed: every model runs as ``<model>.seed<N>``
    seeds: list[int] | None = items(interval(0, 2**32, high_open=True), None, what="seed")
    device: str = matches(r"auto|cpu|cuda(:\d+)?", "'auto', 'cpu', 'cuda' or 'cuda:N'", "auto")

    def __post_init__(self) -> None:
        if self.seeds is not None and len(set(self.seeds)) != len(self.seeds):
            raise invalid("seeds", f"repeats a seed: {self.seeds}")


@dataclass
class PretrainSection:
    """Pre-training of one model; ``objective`` and ``augmentations`` are component tables."""

    data: list[str] = items(what="task (or audio folder) to pre-train on")
    steps: int = positive(1000)
    batch_size: int = positive(32)
    lr: float = positive(1e-3)
    weight_decay: float = non_negative(1e-2)
    warmup_steps: int = non_negative(100)
    grad_clip: float = non_negative(1.0)
    clip_seconds: float = positive(3.0)
    checkpoint_every: int = positive(100)
    num_workers: int = worker_count(0)
    precision: Literal["auto", "fp32", "bf16"] = "auto"


def layer_list() -> Any:
    """A ``layers`` key: encoder layer names, ``["out"]`` (the embedding alone) by default."""
    return items(matches(LAYER_PATTERN, "a layer name (letters, digits, '_', '-')"), [OUT], what="layer")


def check_layer_repeats(layers: list[str]) -> None:
    if len(set(layers)) != len(layers):
        raise invalid("layers", f"repeats a layer: {layers}")


@dataclass
class EmbedSection:
    window: float = positive(3.0, what="positive seconds")
    hop: float = positive(2.0, what="positive seconds")
    batch_size: int | None = positive(None)  # windows per encoder call; None: 32, on CUDA sized from free memory
    pooling: Literal["mean", "mean+std"] = "mean"
    windowing: Literal["start", "centered"] = "start"
    on_bad_audio: Literal["skip", "fail"] = "skip"
    checkpoint_every: int = positive(128)  # tracks per atomic part file: the most a kill can lose
    num_workers: int | None = worker_count(None)  # decode processes; None: one per core (embed.default_workers)
    dtype: Literal["float32", "float16"] = "float32"  # of the stored window embeddings
    compile: bool = False  # the encoder through torch.compile (musicrep.accel.WindowEncoder)
    #: the encoder layers to store and probe, each pooled over time ("out": the embedding); a
    #: model's own ``layers`` key overrides it
    layers: list[str] = layer_list()

    def __post_init__(self) -> None:
        check_layer_repeats(self.layers)


@dataclass
class ModelLayers:
    """``[models.X] layers``: the layers of this model to store and probe, instead of ``[embed]
    layers`` (e.g. a baseline that names no layers beside CNNs probed at several depths)."""

    layers: list[str] = layer_list()

    def __post_init__(self) -> None:
        check_layer_repeats(self.layers)


@dataclass
class ModelSpec:
    """A model to compare: a front end + encoder pair, or a ready model named as in
    ``musicrep.load_model`` (a name a plugin offers, with ``weights``, or a run / checkpoint path)."""

    name: str
    frontend: ComponentRef | None = None
    encoder: ComponentRef | None = None
    load: str | None = None
    weights: str | None = None
    #: the user's own switches for what ``load`` reads (``trust_remote_code``, ``allow_pickle``),
    #: passed to ``musicrep.load_model``; only ever from the user's TOML
    load_switches: dict[str, bool] = field(default_factory=dict)
    pretrain: PretrainSection | None = None
    objective: ComponentRef | None = None
    augmentations: list[ComponentRef] = field(default_factory=list)
    #: seeds its initialisation, pre-training and probes: ``[run] seed``, or one of ``[run] seeds``
    seed: int = 0
    #: the model's name in the TOML, when this is one seed of it (``[run] seeds``)
    replicate_of: str | None = None
    #: the layers to store and probe: its own ``layers`` key, else ``[embed] layers``
    layers: list[str] = field(default_factory=lambda: [OUT])
    #: a store folder to take embeddings from and add to (``musicrep embed --store``), else the run's own
    store: str | None = None

    @property
    def section(self) -> str:
        """Its table in the TOML, for error messages."""
        return f"models.{self.replicate_of or self.name}"

    def describe(self) -> dict[str, Any]:
        """What builds the model (its weights are hashed separately), for cache keys."""
        if self.load is not None:
            return {"load": self.load, "weights": self.weights}
        return {"frontend": self.frontend.describe(), "encoder": self.encoder.describe()}

    @property
    def summary(self) -> str:
        if self.load is not None:
            return f"load_model({self.load!r}" + (f", weights={self.weights!r})" if self.weights else ")")
        return f"{self.frontend.name} + {self.encoder.name}"


@dataclass
class PipelineSpec:
    path: Path
    run: RunSection
    tasks: dict[str, ComponentRef]
    models: dict[str, ModelSpec]
    embed: EmbedSection
    probes: list[ComponentRef]
    raw: dict[str, Any]

    @property
    def run_dir(self) -> Path:
        base = self.path.parent
        return (base / self.run.dir) if self.run.dir else base / "runs" / self.run.name


TOP_LEVEL = ("run", "tasks", "models", "embed", "probe")
#: ``[models.x]`` switches for what ``load`` reads, off unless the user's own TOML sets them
LOAD_SWITCHES = ("trust_remote_code", "allow_pickle")
MODEL_KEYS = ("frontend", "encoder", "pretrain", "load", "weights", "layers", "store", *LOAD_SWITCHES)
PROBE_KEYS = ("probes",)


class _Parser:
    def __init__(self, path: Path, registry: Registry) -> None:
        self.path, self.registry, self.file = path, registry, str(path)

    def error(self, message: str, section: str | None = None, key: str | None = None) -> ConfigError:
        return ConfigError(message, file=self.file, section=section, key=key)

    def table(self, value: Any, section: str, key: str | None = None) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(f"expected a table, got {value!r}", section, key)
        return value

    def check_keys(self, table: Mapping[str, Any], valid: tuple[str, ...], section: str | None) -> None:
        for key in table:
            if key not in valid:
                raise self.error(unknown_key_message(key, valid), section, key)

    def component(self, kind: str, value: Any, section: str) -> ComponentRef:
        if isinstance(value, str):
            value = {"type": value}
        table = dict(self.table(value, section))
        name = table.pop("type", None)
        if name is None:
            raise self.error(f"missing key 'type': which {kind} to use", section, "type")
        if not isinstance(name, str):
            raise self.error(f"expected a {kind} name, got {name!r}", section, "type")
        try:
            info = self.registry.info(kind, name)
        except MusicrepError as exc:
            raise self.error(str(exc), section, "type") from None
        config = info.build_config(table, file=self.file, section=section, base_dir=self.path.parent)
        return ComponentRef(kind, name, config, section)

    def section(self, cls: type, value: Any, section: str) -> Any:
        return build_config(cls, self.table(value, section), file=self.file, section=section)

    def check_names(self, table: Mapping[str, Any], section: str) -> None:
        """Task and model names become folder and file names in the run directory."""
        for name in table:
            problem = name_problem(name)
            if problem is not None:
                raise self.error(f"{section[:-1]} name {problem}", section)

    def model(self, name: str, value: Any, embed: EmbedSection) -> ModelSpec:
        section = f"models.{name}"
        table = dict(self.table(value, section))
        self.check_keys(table, MODEL_KEYS, section)
        spec = self.model_parts(name, table, section)
        spec.layers = (self.section(ModelLayers, {"layers": table["layers"]}, section).layers if "layers" in table
                       else list(embed.layers))
        if "store" in table:
            if not isinstance(table["store"], str) or not table["store"]:
                raise self.error(f"expected a store folder, got {table['store']!r}", section, "store")
            spec.store = str(self.path.parent / table["store"])
        return spec

    def model_parts(self, name: str, table: dict[str, Any], section: str) -> ModelSpec:
        """What builds the model and how it is pre-trained."""
        if "load" in table:
            spec = self.loaded_model(name, table, section)
        else:
            for key in ("frontend", "encoder"):
                if key not in table:
                    raise self.error(f"missing key '{key}' (or load a ready model: {self.ready_models()}, or a "
                                     "run)", section, key)
            if "weights" in table:
                raise self.error("weights go with load = a named model; a frontend + encoder model starts at "
                                 "random initialisation", section, "weights")
            for key in LOAD_SWITCHES:
                if key in table:
                    raise self.error(f"{key} goes with load = a ready model (e.g. \"hf:PATH\")", section, key)
            spec = ModelSpec(name, self.component("frontend", table["frontend"], f"{section}.frontend"),
                             self.component("encoder", table["encoder"], f"{section}.encoder"))
        if "pretrain" in table:
            psec = f"{section}.pretrain"
            pre = dict(self.table(table["pretrain"], psec))
            if "objective" not in pre:
                raise self.error("missing key 'objective' (e.g. { type = \"simclr\" })", psec, "objective")
            spec.objective = self.component("objective", pre.pop("objective"), f"{psec}.objective")
            augs = pre.pop("augmentations", [])
            if not isinstance(augs, list):
                raise self.error("expected a list of augmentation tables", psec, "augmentations")
            spec.augmentations = [self.component("augmentation", a, f"{psec}.augmentations[{i}]")
                                  for i, a in enumerate(augs)]
            spec.pretrain = self.section(PretrainSection, pre, psec)
        return spec

    def ready_models(self) -> str:
        """The names ``load`` accepts besides a path, for messages."""
        return ", ".join(self.registry.components("model")) or "none installed"

    def loaded_model(self, name: str, table: Mapping[str, Any], section: str) -> ModelSpec:
        """``load = NAME`` (a ready model a plugin offers; ``weights`` optional) or
        ``load = "path/to/run-or-checkpoint"``."""
        for key in ("frontend", "encoder"):
            if key in table:
                raise self.error(f"'{key}' cannot be combined with load: the loaded model brings its own",
                                 section, key)
        load, weights = table["load"], table.get("weights")
        if not isinstance(load, str) or not load:
            raise self.error(f"expected a model name ({self.ready_models()}) or a path, got {load!r}", section,
                             "load")
        if weights is not None and not isinstance(weights, str):
            raise self.error(f"expected a path, got {weights!r}", section, "weights")
        base = self.path.parent
        switches = {key: table[key] for key in LOAD_SWITCHES if key in table}
        for key, value in switches.items():
            if not isinstance(value, bool):
                raise self.error(f"expected true or false, got {value!r}", section, key)
        prefix, _, path = load.partition(":")
        if load not in self.registry.components("model") and prefix in self.registry.components("model") and path:
            if weights is not None:  # "NAME:PATH" is NAME with its weights at PATH (e.g. "hf:DIR")
                raise self.error(f"'{load}' names its weights after the colon; drop the weights key", section,
                                 "weights")
            if not (base / path).exists() and "store" not in table:  # with a store: served by it (embed.stored_key)
                raise self.error(f"no such file or folder: {base / path}", section, "load")
            return ModelSpec(name, load=f"{prefix}:{base / path}", load_switches=switches)
        if load not in self.registry.components("model"):
            load = str(base / load)
            if not Path(load).exists() and "store" not in table:  # with a store: served by it (embed.stored_key)
                raise self.error(f"'{table['load']}' is neither a known model ({self.ready_models()}) nor an "
                                 "existing run folder or checkpoint", section, "load")
            if weights is not None:
                raise self.error("weights go with a named model; a run or checkpoint carries its own",
                                 section, "weights")
        if weights is not None:
            weights = str(base / weights)
            if not Path(weights).exists():
                raise self.error(f"no such file or folder: {weights}", section, "weights")
        return ModelSpec(name, load=load, weights=weights, load_switches=switches)

    def default_probes(self) -> list[str]:
        """The probes a pipeline that names none runs: those their plugins mark ``default``."""
        names = [name for name, info in sorted(self.registry.components("probe").items())
                 if getattr(info.factory, "default", False)]
        if not names:
            raise self.error("name the probes to run, e.g. probes = [{ type = \"knn\" }]: no installed probe "
                             "is a default", "probe", "probes")
        return names

    def seeded(self, models: dict[str, ModelSpec], run: RunSection, raw: Mapping[str, Any]) -> dict[str, ModelSpec]:
        """Each model with its seed: ``[run] seed``; or, under ``[run] seeds``, one model per seed,
        named ``<model>.seed<N>`` (its own folders in the run directory; the report groups them)."""
        if run.seeds is None:
            return {name: dataclasses.replace(model, seed=run.seed) for name, model in models.items()}
        if "seed" in raw.get("run", {}):
            raise self.error("give either 'seed' or 'seeds', not both: 'seeds' repeats the run once per seed",
                             "run", "seeds")
        return {f"{name}.seed{seed}": dataclasses.replace(model, name=f"{name}.seed{seed}", seed=seed,
                                                          replicate_of=name)
                for name, model in models.items() for seed in run.seeds}

    def parse(self, raw: Mapping[str, Any]) -> PipelineSpec:
        self.check_keys(raw, TOP_LEVEL, None)
        run = self.section(RunSection, raw.get("run", {}), "run")
        embed = self.section(EmbedSection, raw.get("embed", {}), "embed")
        tasks_raw = self.table(raw.get("tasks", {}), "tasks")
        if not tasks_raw:
            raise self.error("name at least one task, e.g. [tasks.pitch] with type = \"synth\"", "tasks")
        self.check_names(tasks_raw, "tasks")
        tasks = {name: self.component("task", value, f"tasks.{name}") for name, value in tasks_raw.items()}
        models_raw = self.table(raw.get("models", {}), "models")
        if not models_raw:
            raise self.error("name at least one model, e.g. [models.mine] with frontend and encoder",
                             "models")
        self.check_names(models_raw, "models")
        models = self.seeded({name: self.model(name, value, embed) for name, value in models_raw.items()}, run, raw)
        for model in models.values():
            if model.pretrain is None:
                continue
            for i, source in enumerate(model.pretrain.data):
                if source not in tasks and not (self.path.parent / source).is_dir():
                    raise self.error(f"'{source}' is neither a task of this file "
                                     f"({', '.join(tasks)}) nor an audio folder",
                                     f"models.{model.name}.pretrain", "data")
        probe_raw = dict(self.table(raw.get("probe", {}), "probe"))
        self.check_keys(probe_raw, PROBE_KEYS, "probe")
        probes_raw = probe_raw["probes"] if "probes" in probe_raw else self.default_probes()
        if not isinstance(probes_raw, list) or not probes_raw:
            raise self.error("expected a non-empty list of probe tables", "probe", "probes")
        probes = [self.component("probe", p, f"probe.probes[{i}]") for i, p in enumerate(probes_raw)]
        return PipelineSpec(self.path, run, tasks, models, embed, probes, dict(raw))


def load_pipeline(path: str | Path, registry: Registry | None = None) -> PipelineSpec:
    """Read and validate a pipeline TOML; raises ``ConfigError`` naming file, section and key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file", file=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start}); a TOML file is UTF-8", file=str(path)) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=str(path)) from None
    return _Parser(path.resolve(), registry or default_registry()).parse(raw)
