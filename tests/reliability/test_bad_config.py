"""Mutated pipeline TOMLs: every broken config is refused before any work, in one clear line.

Hypothesis takes valid pipelines (a pre-training one in the quickstart's shape and a CSV-task
one) and breaks them one way at a time: a value of the wrong type, an unknown key in any table,
a required key or section removed, a value out of range, a component name that does not
exist, two components that do not fit together. ``musicrep run`` (its in-process ``main``; a
few cases in a real subprocess) must exit with status 2, print one ``musicrep: error:`` line
that names the key (or the value) that was broken and no traceback, and create no run
directory.

The out-of-range values are not written here: they are generated from the ranges and choices
the config classes declare (``musicrep.checks``), for every constrained key of every table of
the documents and, through ``build_config``, of every registered component.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import math
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from musicrep.cli import main
from musicrep.config import build_config, config_fields, field_constraint
from musicrep.conformance import out_of_range
from musicrep.errors import ConfigError
from musicrep.pipeline import spec as spec_module
from musicrep.registry import default_registry

CSV_ROWS = "path,label,split\n" + "".join(f"clip{i}.wav,{'ab'[i % 2]},{('train', 'valid', 'test')[i % 3]}\n"
                                          for i in range(6))

PRETRAIN_BASE: dict[str, Any] = {
    "run": {"name": "mutant", "seed": 1, "device": "cpu"},
    "tasks": {
        "pitch": {"type": "synth", "label": "pitch", "n_train": 8, "n_valid": 4, "n_test": 4, "seconds": 0.5},
        "timbre": {"type": "synth", "label": "timbre", "n_train": 8, "n_valid": 4, "n_test": 4, "seconds": 0.5},
    },
    "models": {
        "contrastive": {
            "frontend": {"type": "mel", "n_fft": 256, "hop_length": 128, "n_mels": 16},
            "encoder": {"type": "fcn", "channels": [4, 8], "dim": 8},
            "pretrain": {
                "objective": {"type": "simclr", "temperature": 0.1, "hidden": [8], "projection_dim": 4},
                "augmentations": [{"type": "gain", "p": 0.5}, {"type": "time-mask", "max_width": 4}],
                "data": ["pitch", "timbre"],
                "steps": 2, "batch_size": 4, "lr": 0.002, "warmup_steps": 1, "clip_seconds": 0.5,
                "checkpoint_every": 1,
            },
        },
        "stats": {
            "frontend": {"type": "mel", "n_fft": 256, "hop_length": 128, "n_mels": 16},
            "encoder": {"type": "mel-stats", "n_features": 16, "n_mfcc": 4},
        },
    },
    "embed": {"window": 0.5, "hop": 0.25, "batch_size": 8, "pooling": "mean", "on_bad_audio": "skip"},
    "probe": {"probes": [{"type": "linear", "c_grid": [0.1, 1.0]}, {"type": "knn", "k_grid": [1, 3]}]},
}

CSV_BASE: dict[str, Any] = {
    "run": {"name": "csv-mutant", "dir": "out/csv", "device": "cpu"},
    "tasks": {"genre": {"type": "csv", "path": "manifest.csv", "prediction_type": "multiclass",
                        "split_column": "split", "label_columns": ["label"]}},
    "models": {"torch": {"frontend": {"type": "torch-mel", "n_fft": 128, "n_mels": 8, "sample_rate": 8000},
                         "encoder": {"type": "mel-stats", "n_features": 8, "n_mfcc": 2}}},
    "embed": {"window": 1.0, "hop": 0.5, "windowing": "centered", "pooling": "mean+std"},
    "probe": {"probes": ["knn"]},
}
BASES = {"pretrain": PRETRAIN_BASE, "csv": CSV_BASE}
BASE_NAMES = list(BASES)


# -- a small TOML writer (everything below a section as inline tables) -------------------------

def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k, ensure_ascii=False)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if not isinstance(v, float) or math.isfinite(v) else {"nan": "nan", "inf": "inf",
                                                                             "-inf": "-inf"}[repr(v)]
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def to_toml(doc: dict[str, Any]) -> str:
    lines = [f"{_key(k)} = {_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines.append(f"\n[{_key(k)}]")
            lines += [f"{_key(kk)} = {_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


# -- where a document can be broken ------------------------------------------------------------

Path_ = tuple  # keys and list indices from the document's root


def _walk(node: Any, path: Path_ = ()) -> list[tuple[Path_, Any]]:
    out = [(path, node)] if path else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _walk(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _walk(v, path + (i,))
    return out


def _get(doc: Any, path: Path_) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def _set(doc: Any, path: Path_, value: Any) -> None:
    _get(doc, path[:-1])[path[-1]] = value


def _name(path: Path_) -> str:
    """The key a message must name: the last named step of the path."""
    return next(str(p) for p in reversed(path) if isinstance(p, str))


def _known_keys() -> set[str]:
    """Every key valid in some table: an added key outside this set is unknown everywhere."""
    keys = {"type", "objective", "augmentations", *spec_module.TOP_LEVEL, *spec_module.MODEL_KEYS,
            *spec_module.PROBE_KEYS}
    for cls in (spec_module.RunSection, spec_module.EmbedSection, spec_module.PretrainSection):
        keys |= {f.name for f in dataclasses.fields(cls)}
    for components in default_registry().components().values():
        for info in components.values():
            if info.config_class is not None:
                keys |= {f.name for f in dataclasses.fields(info.config_class)}
    return keys


KNOWN_KEYS = _known_keys()
COMPONENTS = {kind: set(names) for kind, names in default_registry().components().items()}


def _category(v: Any) -> str:
    return ("bool" if isinstance(v, bool) else "number" if isinstance(v, (int, float)) else
            "str" if isinstance(v, str) else "list" if isinstance(v, list) else "table")


scalars = st.one_of(st.booleans(), st.integers(-2**40, 2**40),
                    st.floats(allow_nan=False, width=32),
                    st.text(st.characters(blacklist_categories=("Cs",)), max_size=8))
others = st.one_of(scalars, st.lists(st.integers(0, 9), max_size=3),
                   st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 9), max_size=2))
unknown_keys = st.from_regex(r"\A[a-z][a-z0-9_]{0,10}\Z").filter(lambda k: k not in KNOWN_KEYS)
# -- out-of-range values, generated from what the config classes declare -----------------------


def _kind(path: Path_) -> str:
    """The component kind of the table at ``path`` (or of its ``type`` key)."""
    return ("task" if path[0] == "tasks" else "probe" if path[0] == "probe" else
            "augmentation" if "augmentations" in path else _name(path))


def _config_class(doc: dict[str, Any], path: Path_) -> type:
    """The config class of the table at ``path``, by where it sits."""
    sections = {("run",): spec_module.RunSection, ("embed",): spec_module.EmbedSection}
    if path in sections:
        return sections[path]
    if path[-1] == "pretrain":
        return spec_module.PretrainSection
    return default_registry().info(_kind(path), _get(doc, path)["type"]).config_class


def _out_of_range_cases() -> list[tuple[str, Path_, Any, str]]:
    """(base, path, a bad value, the key the message must name) for every constrained key of
    every config table of the two documents, present in the document or not."""
    cases = []
    for base, doc in BASES.items():
        tables = [p for p, v in _walk(doc) if isinstance(v, dict) and ("type" in v or p[-1] == "pretrain")]
        for path in [("run",), ("embed",), *tables]:
            values = {k: v for k, v in _get(doc, path).items() if k not in ("type", "objective", "augmentations")}
            for key, bad in out_of_range(_config_class(doc, path), values).items():
                cases += [(base, path + (key,), value, key) for value in bad]
    return cases


# What no single table declares: the pre-training data names tasks the pipeline has.
CROSS_SECTION = [("pretrain", ("models", "contrastive", "pretrain", "data"), ["no-such-task"], "data")]
OUT_OF_RANGE: list[tuple[str, Path_, Any, str]] = _out_of_range_cases() + CROSS_SECTION


def _registered_config_classes() -> list[tuple[str, type]]:
    classes = [(f"{kind} '{name}'", info.config_class)
               for kind, components in default_registry().components().items()
               for name, info in components.items()
               if info.config_class is not None]  # ready models are configured by their weights
    return classes + [(cls.__name__, cls) for cls in (spec_module.RunSection, spec_module.EmbedSection,
                                                      spec_module.PretrainSection)]


# Every registered component's every constrained key: (what, class, key, bad value).
COMPONENT_CASES = [(what, cls, key, value) for what, cls in _registered_config_classes()
                   for key, bad in out_of_range(cls, {}).items() for value in bad]


# A component name that does not exist, at every place a component is named.
COMPONENT_SLOTS = [(base, path[:-1]) for base, doc in BASES.items() for path, v in _walk(doc) if path[-1] == "type"]
# Keys whose removal leaves no valid config (everything else has a default).
REQUIRED = [(base, path) for base, doc in BASES.items() for path, _ in _walk(doc)
            if path[-1] in ("type", "frontend", "encoder", "objective", "data", "tasks", "models")
            or (base == "csv" and path == ("tasks", "genre", "path"))]


@st.composite
def mutation(draw: st.DrawFn) -> tuple[str, dict[str, Any], str, str]:
    """(base name, broken document, what was done, the word the error must contain)."""
    how = draw(st.sampled_from(["wrong type", "unknown key", "missing", "out of range", "no such component",
                                "mismatch"]))
    if how == "out of range":
        base, path, value, key = draw(st.sampled_from(OUT_OF_RANGE))
        doc = copy.deepcopy(BASES[base])
        _set(doc, path, value)
        return base, doc, f"{how}: {path} = {value!r}", key
    if how == "no such component":
        base, path = draw(st.sampled_from(COMPONENT_SLOTS))
        doc = copy.deepcopy(BASES[base])
        kind = _kind(path)
        name = draw(st.from_regex(r"\A[a-z][a-z0-9-]{1,12}\Z").filter(lambda n: n not in COMPONENTS[kind]))
        _get(doc, path)["type"] = name
        return base, doc, f"{how}: {path}.type = {name!r}", name
    if how == "missing":
        base, path = draw(st.sampled_from(REQUIRED))
        doc = copy.deepcopy(BASES[base])
        del _get(doc, path[:-1])[path[-1]]
        return base, doc, f"{how}: {path}", _name(path)
    if how == "mismatch":  # each table valid on its own, the two do not fit together
        base = draw(st.sampled_from(BASE_NAMES))
        doc = copy.deepcopy(BASES[base])
        model = "stats" if base == "pretrain" else "torch"
        features = _get(doc, ("models", model, "encoder", "n_features"))
        n_mels = draw(st.integers(4, 64).filter(lambda n: n != features))
        _get(doc, ("models", model, "frontend"))["n_mels"] = n_mels
        _get(doc, ("models", model, "encoder"))["n_mfcc"] = 2
        return base, doc, f"{how}: {model} n_mels={n_mels} vs n_features={features}", "n_features"
    base = draw(st.sampled_from(BASE_NAMES))
    doc = copy.deepcopy(BASES[base])
    if how == "unknown key":
        tables = [()] + [p for p, v in _walk(doc) if isinstance(v, dict)]
        path = draw(st.sampled_from(tables))
        key = draw(unknown_keys)
        if path in ((), ("tasks",), ("models",)):
            key = key + "_x"  # a new task or model named `key` would be a wrong type, not unknown
        _get(doc, path)[key] = draw(scalars)
        return base, doc, f"{how}: {path} + {key!r}", key
    # wrong type: a leaf or a table replaced by a value of another kind (never a string for a
    # table: a string is the short form of a component table)
    path, old = draw(st.sampled_from(_walk(doc)))
    value = draw(others.filter(lambda v: _category(v) != _category(old)
                               and not (isinstance(old, dict) and isinstance(v, str))
                               and not (isinstance(old, float) and _category(v) == "number")))
    _set(doc, path, value)
    return base, doc, f"{how}: {path} = {value!r}", _name(path)


def run_cli(folder: Path, doc: dict[str, Any]) -> tuple[int, str]:
    toml = folder / "pipeline.toml"
    toml.write_text(to_toml(doc), encoding="utf-8")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(["run", str(toml)])
        except SystemExit as exc:  # argparse
            code = exc.code
    return code, err.getvalue()


def check_refused(code: int, err: str, word: str, what: str, before: set[str], folder: Path) -> None:
    assert "Traceback" not in err, f"{what}: a traceback reached the user:\n{err}"
    assert code == 2, f"{what}: exit status {code}, expected 2; stderr:\n{err[-3000:]}"
    errors = [line for line in err.splitlines() if line.startswith("musicrep: error:")]
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]), f"{what}: not one error line:\n{err}"
    assert word.lower() in errors[0].lower(), f"{what}: the message does not name {word!r}: {errors[0]}"
    created = {str(p.relative_to(folder)) for p in folder.rglob("*")} - before - {"pipeline.toml"}
    assert not created, f"{what}: created {sorted(created)} before refusing: {errors[0]}"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config")
    (path / "manifest.csv").write_text(CSV_ROWS, encoding="utf-8")
    return path


def test_the_bases_are_valid(folder: Path) -> None:
    """The unbroken documents pass every check (a dry run plans them without error)."""
    for doc in BASES.values():
        toml = folder / "valid.toml"
        toml.write_text(to_toml(doc), encoding="utf-8")
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert main(["run", "--dry-run", str(toml)]) == 0, err.getvalue()
        toml.unlink()


@settings(derandomize=True, max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
@given(mutation())
def test_a_broken_config_is_refused_in_one_line_before_any_work(folder: Path, case: tuple) -> None:
    _, doc, what, word = case
    before = {str(p.relative_to(folder)) for p in folder.rglob("*")}
    code, err = run_cli(folder, doc)
    check_refused(code, err, word, what, before, folder)


def test_a_probe_that_cannot_serve_the_task_kind_is_refused(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from musicrep.plugins.probes import KNNProbe

    monkeypatch.setattr(KNNProbe, "kinds", ("regression",))
    doc = copy.deepcopy(CSV_BASE)
    before = {str(p.relative_to(folder)) for p in folder.rglob("*")}
    code, err = run_cli(folder, doc)
    check_refused(code, err, "knn", "knn on a multiclass task", before, folder)


@pytest.mark.parametrize("text, word", [("[run\nname = 1", "not valid TOML"), ("[run]\nname = \"x\"\n", "tasks"),
                                        ("", "tasks"), ("tasks = 3", "tasks")])
def test_a_file_that_is_no_pipeline_is_refused(folder: Path, text: str, word: str) -> None:
    toml = folder / "pipeline.toml"
    toml.write_text(text, encoding="utf-8")
    before = {str(p.relative_to(folder)) for p in folder.rglob("*")}
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["run", str(toml)])
    check_refused(code, err.getvalue(), word, repr(text), before, folder)


def test_a_missing_manifest_is_refused_naming_it(folder: Path) -> None:
    doc = copy.deepcopy(CSV_BASE)
    doc["tasks"]["genre"]["path"] = "no-such-manifest.csv"
    before = {str(p.relative_to(folder)) for p in folder.rglob("*")}
    code, err = run_cli(folder, doc)
    check_refused(code, err, "no-such-manifest.csv", "missing manifest", before, folder)


SUBPROCESS_CASES = {
    "unknown key": (to_toml({**PRETRAIN_BASE, "embed": {**PRETRAIN_BASE["embed"], "hopp": 1.0}}), "hopp"),
    "mismatch": (to_toml({**CSV_BASE, "models": {"torch": {**CSV_BASE["models"]["torch"],
                                                           "encoder": {"type": "mel-stats", "n_features": 9}}}}),
                 "n_features"),
}


@pytest.mark.parametrize("name", list(SUBPROCESS_CASES))
def test_the_real_command_prints_no_traceback(tmp_path: Path, name: str) -> None:
    text, word = SUBPROCESS_CASES[name]
    (tmp_path / "manifest.csv").write_text(CSV_ROWS, encoding="utf-8")
    toml = tmp_path / "pipeline.toml"
    toml.write_text(text, encoding="utf-8")
    before = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")}
    proc = subprocess.run([sys.executable, "-m", "musicrep.cli", "run", str(toml)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    check_refused(proc.returncode, proc.stderr, word, name, before, tmp_path)


def test_the_generated_cases_cover_every_declared_range() -> None:
    """The generator finds the declarations: at least one bad value for every key that declares
    a range or a choice, in both documents and in every registered component."""
    assert len(OUT_OF_RANGE) >= 41 and len(COMPONENT_CASES) >= len(OUT_OF_RANGE)
    for what, cls in _registered_config_classes():
        declared = {name for name in config_fields(cls) if field_constraint(cls, name) is not None}
        assert declared <= {key for w, _, key, _ in COMPONENT_CASES if w == what}, what


def test_every_registered_component_refuses_its_out_of_range_values() -> None:
    """Every declared range of every registered component (and pipeline section), one bad value
    at a time: a ConfigError on that key, naming the file and section."""
    for what, cls, key, value in COMPONENT_CASES:
        with pytest.raises(ConfigError) as err:
            build_config(cls, {key: value}, file="bad.toml", section="table")
        message = str(err.value)
        assert err.value.key == key, f"{what}: {key} = {value!r} was blamed on {err.value.key!r}: {message}"
        assert "bad.toml" in message and "[table]" in message and key in message, f"{what}: {message}"


def test_every_generated_out_of_range_value_is_refused_naming_file_section_and_key(folder: Path) -> None:
    """All of the documents' generated cases (the property test above samples them through the
    whole command): reading the pipeline refuses each, naming the file, the table and the key."""
    toml = folder / "every.toml"
    for base, path, value, key in OUT_OF_RANGE[:-len(CROSS_SECTION)]:
        doc = copy.deepcopy(BASES[base])
        _set(doc, path, value)
        toml.write_text(to_toml(doc), encoding="utf-8")
        with pytest.raises(ConfigError) as err:
            spec_module.load_pipeline(toml)
        assert err.value.key == key and str(toml) in str(err.value), f"{path} = {value!r}: {err.value}"
        assert err.value.section is not None and err.value.section.startswith(str(path[0])), str(err.value)
    toml.unlink()


# -- tasks the probes cannot use: refused with the config's errors, not after the embedding ----

def task_rows(rng: random.Random, case: str) -> tuple[str, str]:
    """A manifest broken the way ``case`` says (sizes, labels and the broken rows drawn fresh), and
    the word its error must name."""
    n = rng.randint(9, 30)
    classes = rng.sample(["rock", "jazz", "folk", "soul", "punk"], rng.randint(2, 4))
    splits = [("train", "valid", "test")[i % 3] for i in range(n)]
    labels = [rng.choice(classes) for _ in range(n)]
    labels[:len(classes)] = classes  # every class is in train, valid or test somewhere
    if case == "one class":
        label = rng.choice(classes)
        labels, word = [label] * n, label
    elif case == "unknown split":
        word = rng.choice(["validation", "dev", "Test", "training"])
        for i in rng.sample(range(n), rng.randint(1, n // 3)):
            splits[i] = word
    else:  # no test split
        splits, word = [s if s != "test" else rng.choice(["train", "valid"]) for s in splits], "test"
    return "path,label,split\n" + "".join(f"clip{i}.wav,{l},{s}\n" for i, (l, s) in enumerate(zip(labels, splits))), word


@pytest.mark.parametrize("case", ["one class", "unknown split", "no test split"])
def test_a_task_its_probes_cannot_use_is_refused_before_any_work(tmp_path: Path, case: str) -> None:
    rng = random.Random()
    text, word = task_rows(rng, case)
    (tmp_path / "manifest.csv").write_text(text, encoding="utf-8")
    before = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")}
    code, err = run_cli(tmp_path, copy.deepcopy(CSV_BASE))
    check_refused(code, err, word, f"{case}: {text}", before, tmp_path)
    assert "genre" in err.splitlines()[-1] or "manifest.csv" in err.splitlines()[-1]
