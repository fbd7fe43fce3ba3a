"""``musicrep check KIND NAME``: a component run through its kind's contract, one verdict per rule.

A plugin's components are loaded into every run, so their authors need to know before a run
does that they keep the contract the core relies on: the output shapes and ``.dim``, float32
out, output on the input's device, the same output twice in eval mode, a clip embedded alone
as in a batch, ``forward_layers`` returning the layers ``layer_names`` promises, the state dict
restoring the same outputs, the Config's declared ranges refusing what they should, and no
network while it is built and run. Each rule gives ``pass``, ``fail`` (with what broke) or
``skip`` (with why it does not apply: e.g. a component whose options have no defaults, when
none were given). The check knows no concrete component: it works from the registry, the kind's
contract and the component's own Config.
"""
from __future__ import annotations

import copy
import dataclasses
import socket
import typing
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import numpy as np
import torch
from torch import nn

from musicrep.config import config_fields, field_constraint, field_default
from musicrep.errors import ConfigError
from musicrep.registry import ComponentInfo, Registry, default_registry

Outcome = Literal["pass", "fail", "skip"]
#: the tolerance of "the same output": float32 kernels may sum in another order for another batch
ATOL, RTOL = 1e-4, 1e-4
BATCH, SECONDS = 3, 2.0


@dataclass(frozen=True)
class Verdict:
    rule: str
    outcome: Outcome
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.outcome:<4}  {self.rule}" + (f": {self.detail}" if self.detail else "")


class RuleFailed(AssertionError):
    """A rule's check found the contract broken; the message says how."""


class Skip(Exception):
    """A rule that does not apply to this component; the message says why."""


class NetworkUse(RuntimeError):
    pass


@contextmanager
def no_network(attempts: list[str]) -> Iterator[None]:
    """Every socket connection refused (and recorded in ``attempts``) while the check runs."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_create = socket.create_connection

    def refuse(address: Any) -> None:
        attempts.append(str(address))
        raise NetworkUse(f"musicrep check: network connection to {address} refused")

    socket.socket.connect = lambda self, address: refuse(address)  # type: ignore[method-assign]
    socket.socket.connect_ex = lambda self, address: refuse(address)  # type: ignore[method-assign]
    socket.create_connection = lambda address, *args, **kwargs: refuse(address)  # type: ignore[assignment]
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex = real_connect, real_connect_ex  # type: ignore[method-assign]
        socket.create_connection = real_create  # type: ignore[assignment]


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a.float().cpu(), b.float().cpu(), atol=ATOL, rtol=RTOL)


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise RuleFailed(message)


def cuda_device() -> torch.device | None:
    return torch.device("cuda") if torch.cuda.is_available() else None


# -- Config ranges -------------------------------------------------------------------------------

def is_int(tp: Any) -> bool:
    """Whether a field's values (or its list's items) are integers: int, int | None, list[int]."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return tp is int or any(is_int(a) for a in args)


def out_of_range(cls: type, values: dict[str, Any]) -> dict[str, list[Any]]:
    """Every field's out-of-range values, from its declared constraint or its ``Literal``
    choices, given the table's other ``values`` (for bounds that name a field), as
    scikit-learn's ``generate_invalid_param_val`` does. ``musicrep check`` and the config
    tests (tests/reliability/test_bad_config.py) both generate their cases here."""
    hints = typing.get_type_hints(cls)
    fields = config_fields(cls)
    current = {name: field_default(f) for name, f in fields.items()} | values
    current = {name: None if v is dataclasses.MISSING else v for name, v in current.items()}
    bad: dict[str, list[Any]] = {}
    for name in fields:
        constraint = field_constraint(cls, name)
        values_ = constraint.invalid_values(current[name], current, is_int(hints[name])) if constraint else []
        choices = [a for arm in (hints[name], *typing.get_args(hints[name])) if typing.get_origin(arm) is Literal
                   for a in typing.get_args(arm)]
        if choices and all(isinstance(c, str) for c in choices):
            values_.append("no-such-" + choices[0])
        if values_:
            bad[name] = values_
    return bad


def config_ranges(info: ComponentInfo, options: dict[str, Any]) -> str:
    """The declared defaults meet their ranges and every value outside a range is refused, naming
    its key (a range that lets a wrong value through fails the run later, far from its cause)."""
    cls = info.config_class
    if cls is None:
        raise Skip(f"a {info.kind} is configured by its loader, not a Config")
    for name, f in config_fields(cls).items():
        default, constraint = field_default(f), field_constraint(cls, name)
        if constraint is not None and default not in (None, dataclasses.MISSING):
            problem = constraint.problem(default, {n: field_default(g) for n, g in config_fields(cls).items()})
            expect(problem is None, f"the default of '{name}' breaks its own range: {problem}")
    checked = 0
    for name, values in out_of_range(cls, options).items():
        for value in values:
            try:
                info.build_config({**options, name: value})
            except ConfigError as exc:
                expect(exc.key == name or name in str(exc), f"{name} = {value!r} was refused naming another key: {exc}")
                checked += 1
            except Exception as exc:
                raise RuleFailed(f"{name} = {value!r} raised {type(exc).__name__}, not a ConfigError: {exc}") from None
            else:
                raise RuleFailed(f"{name} = {value!r} is outside its declared range but was accepted")
    return f"{checked} out-of-range values refused, each naming its key"


# -- per-kind contracts --------------------------------------------------------------------------

Rule = Callable[[], str]


def module_rules(build: Callable[[], nn.Module], run: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                 make_input: Callable[[int, torch.device], torch.Tensor], check_output: Callable[[nn.Module, torch.Tensor, torch.Tensor], str],
                 batch_independent: bool = True) -> dict[str, Rule]:
    """The rules every module kind shares: shape, dtype, device, determinism, batch, state dict."""
    def evaluate(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return run(module, x)

    module = build().eval()
    cpu = torch.device("cpu")
    x = make_input(BATCH, cpu)
    y = evaluate(module, x)
    rules: dict[str, Rule] = {
        "output shape": lambda: check_output(module, x, y),
        "dtype": lambda: (expect(y.dtype == torch.float32, f"gives {y.dtype}, the contract is float32"), "float32")[1],
    }

    def device() -> str:
        expect(y.device == x.device, f"input on {x.device}, output on {y.device}")
        cuda = cuda_device()
        if cuda is None:
            return "output on the input's device (cpu; no CUDA device here for the cuda variant)"
        moved = build().eval().to(cuda)
        moved.load_state_dict(module.state_dict())
        out = evaluate(moved, x.to(cuda))
        expect(out.device.type == "cuda", f"input on cuda, output on {out.device}")
        expect(same(out, y), "gives other values on cuda than on cpu")
        return "output on the input's device (cpu and cuda)"

    def deterministic() -> str:
        expect(same(evaluate(module, x), y), "two calls in eval mode on the same input differ")
        return "the same output twice in eval mode"

    def batch() -> str:
        if not batch_independent:
            raise Skip("its contract draws per batch")
        alone = evaluate(module, x[:1])
        expect(same(alone, y[:1]), "the first clip gives another output alone than in a batch of "
                                   f"{BATCH} (max difference {float((alone - y[:1]).abs().max()):.3g})")
        return f"a clip gives the same output alone and in a batch of {BATCH}"

    def state_dict() -> str:
        torch.manual_seed(12345)  # another initialisation, then the first one's state
        other = build().eval()
        state = module.state_dict()
        expect(set(other.state_dict()) == set(state), "a second instance has other state-dict keys")
        other.load_state_dict(state)
        expect(same(evaluate(other, x), y), "a second instance loaded with the first's state dict gives other outputs")
        return f"{len(state)} tensors restore the same outputs"

    rules.update({"device": device, "deterministic": deterministic, "batch-independent": batch,
                  "state dict round trip": state_dict})
    return rules


def frontend_rules(info: ComponentInfo, options: dict[str, Any]) -> dict[str, Rule]:
    build = lambda: info.create(**options)  # noqa: E731
    rate = int(build().sample_rate)
    samples = int(SECONDS * rate)

    def make(batch: int, device: torch.device) -> torch.Tensor:
        return 0.1 * torch.randn(batch, samples, generator=torch.Generator().manual_seed(0)).to(device)

    def check(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> str:
        expect(y.dim() == 3 and y.shape[0] == x.shape[0], f"waves {tuple(x.shape)} gave {tuple(y.shape)}, the "
                                                           "contract is [B, F, frames]")
        hop = getattr(module, "hop_length", None)
        expect(isinstance(hop, int) and hop > 0, f"hop_length must be a positive int, got {hop!r}")
        n_features = getattr(module, "n_features", None)
        if n_features is not None:
            expect(y.shape[1] == n_features, f"n_features is {n_features} but it gives {y.shape[1]} rows")
        if callable(getattr(module, "frames", None)):
            expect(y.shape[2] == module.frames(samples), f"frames({samples}) says {module.frames(samples)}, it "
                                                         f"gives {y.shape[2]}")
        return f"[B, T] -> {list(y.shape)} at {rate} Hz, hop {hop}"

    with torch.no_grad():
        return module_rules(build, lambda m, x: m(x), make, check)


def features_for(encoder: nn.Module, options: dict[str, Any]) -> tuple[int, int]:
    """Rows and frames of the features to feed an encoder: its ``n_features`` where it declares
    one, else 96 mel bands; 2 s of 100 frames a second."""
    n_features = getattr(getattr(encoder, "config", None), "n_features", None) or options.get("n_features") or 96
    return int(n_features), 200


def encoder_rules(info: ComponentInfo, options: dict[str, Any]) -> dict[str, Rule]:
    from musicrep.layers import OUT, encode_layers, layer_names

    build = lambda: info.create(**options)  # noqa: E731
    probe = build()
    if getattr(probe, "sample_rate", None) is not None:
        raise Skip("an encoder of raw audio: check it inside a ready model (model KIND) or with its front end")
    rows, frames = features_for(probe, options)

    def make(batch: int, device: torch.device) -> torch.Tensor:
        return torch.randn(batch, rows, frames, generator=torch.Generator().manual_seed(1)).to(device)

    def check(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> str:
        dim = getattr(module, "dim", None)
        expect(isinstance(dim, int), f".dim must be an int, got {dim!r}")
        expect(tuple(y.shape) == (x.shape[0], dim), f"features {tuple(x.shape)} gave {tuple(y.shape)}, the "
                                                     f"contract is [B, dim] = {(x.shape[0], dim)}")
        return f"[B, {rows}, {frames}] -> [B, {dim}], .dim = {dim}"

    with torch.no_grad():
        rules = module_rules(build, lambda m, x: m(x), make, check)
        module = build().eval()
        x = make(BATCH, torch.device("cpu"))

    def layers() -> str:
        try:
            names = layer_names(module)
        except ValueError as exc:
            raise RuleFailed(str(exc)) from None
        if names == (OUT,):
            return "offers only 'out'"
        expect(callable(getattr(module, "forward_layers", None)), "names layers but has no forward_layers")
        with torch.no_grad():
            found = module.forward_layers(x, names)
            expect(set(found) == set(names), f"forward_layers gave {sorted(found)} for {list(names)}")
            pooled = encode_layers(module, x, names)
            expect(same(pooled[OUT], module(x)), "forward_layers' 'out' differs from forward")
            for name in {names[0], names[-2]}:  # the shallowest and deepest alone, as a store may ask
                alone = module.forward_layers(x, (name,))
                expect(set(alone) == {name}, f"forward_layers gave {sorted(alone)} when asked for {name!r} only")
        shapes = ", ".join(f"{name} {pooled[name].shape[1]}" for name in names)
        return f"forward_layers returns exactly the asked layers ({shapes})"

    rules["layer names"] = layers
    return rules


def augmentation_rules(info: ComponentInfo, options: dict[str, Any]) -> dict[str, Rule]:
    from musicrep.augment import DOMAINS

    build = lambda: info.create(**options)  # noqa: E731
    domain = getattr(build(), "domain", None)
    if domain not in DOMAINS:
        def wrong() -> str:
            raise RuleFailed(f"domain must be one of {DOMAINS}, got {domain!r}")
        return {"output shape": wrong}
    shape = (16000,) if domain == "wave" else (64, 100)

    def make(batch: int, device: torch.device) -> torch.Tensor:
        scale = 0.1 if domain == "wave" else 1.0
        return scale * torch.randn(batch, *shape, generator=torch.Generator().manual_seed(2)).to(device)

    def run(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return module(x, torch.Generator(device=x.device).manual_seed(3))

    def check(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> str:
        expect(y.shape == x.shape, f"{domain} batch {tuple(x.shape)} gave {tuple(y.shape)}")
        expect(bool(torch.isfinite(y).all()), "gives non-finite values")
        return f"{domain} [B, {', '.join(map(str, shape))}] kept; the same seed, the same output"

    with torch.no_grad():
        rules = module_rules(build, run, make, check, batch_independent=False)
    return rules


class _MeanEncoder(nn.Module):
    """The smallest encoder an objective that runs its own copy of one can attach to."""

    def __init__(self, rows: int, dim: int) -> None:
        super().__init__()
        self.dim, self.linear = dim, nn.Linear(rows, dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features.mean(dim=-1))


def objective_rules(info: ComponentInfo, options: dict[str, Any]) -> dict[str, Rule]:
    from musicrep.objective import TrainingData

    dim, rows, classes = 16, 8, 3

    def build() -> nn.Module:
        objective = info.create(**options)
        labelled = getattr(objective, "needs_labels", False)
        objective.setup(dim, TrainingData("multiclass" if labelled else None, classes if labelled else 0))
        objective.attach(_MeanEncoder(rows, dim))
        return objective

    def make(batch: int, device: torch.device) -> torch.Tensor:
        return torch.randn(batch * 2, dim, generator=torch.Generator().manual_seed(4)).to(device)

    def run(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        views = int(getattr(module, "views", 1))
        batch = len(x) // 2
        embeddings = [x[:batch] + 0.01 * i for i in range(views)]
        targets = torch.eye(classes, device=x.device)[torch.arange(batch, device=x.device) % classes]
        targets = targets if getattr(module, "needs_labels", False) else None
        if getattr(module, "needs_features", False):
            features = [torch.randn(batch, rows, 20, generator=torch.Generator().manual_seed(5 + i)).to(x.device)
                        for i in range(views)]
            return module(embeddings, targets, features=features)
        return module(embeddings, targets)

    def check(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> str:
        expect(y.dim() == 0, f"the loss must be a scalar, got shape {tuple(y.shape)}")
        expect(bool(torch.isfinite(y)), f"the loss is {float(y)}")
        leaf = x.clone().requires_grad_(True)
        run(copy.deepcopy(module).train(), leaf).backward()  # a copy: training updates state (BatchNorm)
        expect(leaf.grad is not None and bool(leaf.grad.abs().sum() > 0), "no gradient reaches the embeddings")
        return f"a finite scalar ({float(y):.4g}) whose gradient reaches the embeddings"

    return module_rules(build, run, make, check, batch_independent=False)


def task_rules(info: ComponentInfo, options: dict[str, Any]) -> dict[str, Rule]:
    from musicrep.tasks import KINDS as TASK_KINDS

    task = info.create(**options)
    rate = 16000

    def items() -> str:
        expect(task.kind in TASK_KINDS, f"kind must be one of {TASK_KINDS}, got {task.kind!r}")
        counts = {split: len(task.items(split)) for split in ("train", "valid", "test")}
        expect(counts["train"] > 0 and counts["test"] > 0, f"needs train and test items, has {counts}")
        expect(len(task.label_names) > 0 or task.kind == "regression", "names no labels")
        expect(len(task.metrics) > 0, "names no metrics")
        return f"{task.kind}, {counts}, {len(task.label_names)} labels, metrics {task.metrics}"

    def audio() -> str:
        item = task.items("train")[0]
        wave = task.audio(item, rate)
        expect(isinstance(wave, np.ndarray) and wave.ndim == 1, f"audio must be a 1-D array, got "
                                                                f"{type(wave).__name__} {getattr(wave, 'shape', '')}")
        expect(wave.dtype == np.float32, f"audio must be float32, got {wave.dtype}")
        expect(bool(np.isfinite(wave).all()), "audio holds non-finite samples")
        expect(np.array_equal(task.audio(item, rate), wave), "the same item gives other audio on a second read")
        return f"{item.id}: {len(wave)} float32 samples at {rate} Hz, the same on a second read"

    return {"items": items, "audio": audio}


def probe_rules(info: ComponentInfo, options: dict[str, Any]) -> dict[str, Rule]:
    from musicrep.probing import Split

    rng = np.random.default_rng(6)
    centres = rng.normal(size=(3, 8)) * 4

    def split(n: int) -> Split:
        labels = np.arange(n) % 3
        return Split((centres[labels] + rng.normal(size=(n, 8))).astype(np.float32),
                     np.eye(3, dtype=np.float32)[labels])

    train, valid, test = split(60), split(30), split(30)

    def accuracy(y: np.ndarray, scores: np.ndarray) -> float:
        return float((y.argmax(1) == scores.argmax(1)).mean())

    def fit_predict() -> np.ndarray:
        probe = info.create(**options)
        if "multiclass" not in getattr(probe, "kinds", ()):
            raise Skip("serves no multiclass tasks")
        probe.fit(train, valid, "multiclass", accuracy, 0)
        return probe.predict(test.x)

    def output() -> str:
        scores = fit_predict()
        expect(isinstance(scores, np.ndarray) and scores.shape == test.y.shape,
               f"predict gave {getattr(scores, 'shape', type(scores).__name__)}, expected {test.y.shape}")
        score = accuracy(test.y, scores)
        expect(score > 0.8, f"accuracy {score:.2f} on three well-separated clusters")
        return f"scores {scores.shape}, accuracy {score:.2f} on separable clusters"

    def deterministic() -> str:
        expect(np.allclose(fit_predict(), fit_predict(), atol=1e-5), "two fits with the same seed predict differently")
        return "two fits with the same seed predict the same"

    return {"output shape": output, "deterministic": deterministic}


def model_rules(name: str, options: dict[str, Any]) -> dict[str, Rule]:
    from musicrep.layers import OUT, encode_layers, layer_names
    from musicrep.load import load_model

    def build() -> nn.Module:
        torch.manual_seed(0)
        return load_model(name, **options)

    model = build()
    rate = model.sample_rate

    def make(batch: int, device: torch.device) -> torch.Tensor:
        seconds = max(SECONDS, model.embedder.window_seconds * 1.5)
        return 0.1 * torch.randn(batch, int(seconds * rate), generator=torch.Generator().manual_seed(7)).to(device)

    def check(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> str:
        expect(tuple(y.shape) == (x.shape[0], module.dim), f"waves {tuple(x.shape)} gave {tuple(y.shape)}, "
                                                           f"expected [B, dim] = {(x.shape[0], module.dim)}")
        timeline, offsets = module.timeline(x)
        expect(timeline.shape[:2] == (x.shape[0], len(offsets)), f"timeline {tuple(timeline.shape)} for "
                                                                  f"{len(offsets)} windows")
        return f"[B, {x.shape[1]}] at {rate} Hz -> [B, {module.dim}] over {len(offsets)} windows"

    def run(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return module(x)

    rules = module_rules(build, run, make, check)

    def layers() -> str:
        encoder = model.embedder.encoder
        names = layer_names(encoder)
        windows = model.embedder.windows(make(BATCH, torch.device("cpu")))[0].flatten(0, 1)
        with torch.no_grad():
            found = encode_layers(encoder, windows, names)
            expect(set(found) == set(names), f"forward_layers gave {sorted(found)} for {list(names)}")
            expect(same(found[OUT], encoder(windows)), "forward_layers' 'out' differs from forward")
        return f"{len(names)} layers ({', '.join(names)}) returned as asked"

    rules["layer names"] = layers
    return rules


RULES = {"frontend": frontend_rules, "encoder": encoder_rules, "augmentation": augmentation_rules,
         "objective": objective_rules, "task": task_rules, "probe": probe_rules}


def run_rules(rules: dict[str, Rule]) -> list[Verdict]:
    verdicts = []
    for rule, check in rules.items():
        try:
            verdicts.append(Verdict(rule, "pass", check()))
        except Skip as exc:
            verdicts.append(Verdict(rule, "skip", str(exc)))
        except Exception as exc:  # a broken rule is the verdict, whatever the component raised
            verdicts.append(Verdict(rule, "fail", f"{type(exc).__name__}: {exc}" if not isinstance(exc, RuleFailed)
                                    else str(exc)))
    return verdicts


def check_component(kind: str, name: str, options: dict[str, Any] | None = None,
                    registry: Registry | None = None) -> list[Verdict]:
    """Every rule of ``kind``'s contract, run on the component ``name`` built with ``options``
    (a ready model: ``name`` as ``musicrep.load_model`` takes it, e.g. ``"hf:PATH"`` or a run folder;
    it is loaded from the process's registry, ``musicrep.load_model``'s)."""
    registry = registry or default_registry()
    options = dict(options or {})
    if kind == "model":  # a ready model as load_model names it: NAME, NAME:PATH, or a musicrep run
        prefix = name.partition(":")[0]
        info = registry.info("model", prefix) if not Path(name).exists() else None
    else:
        info = registry.info(kind, name)
    attempts: list[str] = []
    verdicts: list[Verdict] = []
    with no_network(attempts):
        if kind != "model":
            verdicts += run_rules({"config ranges": lambda: config_ranges(info, options)})
        try:
            if kind == "model":
                rules = model_rules(name, options)
            else:
                info.build_config(options)  # a missing required key says which, before any rule
                rules = RULES[kind](info, options)
        except Skip as exc:
            verdicts.append(Verdict("contract", "skip", str(exc)))
            rules = {}
        except ConfigError as exc:
            verdicts.append(Verdict("contract", "skip", f"needs options to build ({exc}); pass them with --set "
                                                        "KEY=VALUE"))
            rules = {}
        except Exception as exc:
            verdicts.append(Verdict("builds", "fail", f"{type(exc).__name__}: {exc}"))
            rules = {}
        else:
            verdicts.append(Verdict("builds", "pass", f"{kind} {name} with {options or 'its defaults'}"))
        verdicts += run_rules(rules)
    verdicts.append(Verdict("no network", "fail", f"tried to connect to {attempts[0]}") if attempts
                    else Verdict("no network", "pass", "no connection attempted while built and run"))
    return verdicts


def passed(verdicts: list[Verdict]) -> bool:
    return not any(v.outcome == "fail" for v in verdicts)

