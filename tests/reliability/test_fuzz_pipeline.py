"""Fuzz: pipeline TOMLs, random and mutated, through ``load_pipeline`` and ``musicrep run --dry-run``;
and the resource knobs a TOML holds (worker counts, encoder sizes, a ``load`` of something that is
no model) refused in one line before any work."""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given
from hypothesis import strategies as st

from cli_in_process import cli
from fuzzing import FUZZ, check_one_line, mutated, returns_or_one_line, scaled
from musicrep.pipeline.spec import MAX_WORKERS, load_pipeline

VALID: dict[str, Any] = {
    "run": {"name": "fuzz", "device": "cpu", "seed": 1},
    "tasks": {"pitch": {"type": "synth", "label": "pitch", "n_classes": 3, "n_train": 6, "n_valid": 3, "n_test": 3,
                        "seconds": 0.5}},
    "models": {"small": {"frontend": {"type": "mel", "n_fft": 256, "hop_length": 128, "n_mels": 8},
                         "encoder": {"type": "fcn", "channels": [2], "dim": 4}}},
    "embed": {"window": 0.5, "hop": 0.25, "num_workers": 0},
    "probe": {"probes": [{"type": "knn", "k_grid": [1]}]},
}


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{ " + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"


def toml_text(document: dict[str, Any]) -> str:
    """Top-level tables as ``[section]`` headers, deeper ones inline."""
    lines = []
    for section, table in document.items():
        if isinstance(table, dict):
            lines.append(f"[{json.dumps(section)}]")
            lines += [f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in table.items()]
        else:
            lines.insert(0, f"{json.dumps(section)} = {toml_value(table)}")
    return "\n".join(lines) + "\n"


toml_values = st.recursive(
    st.booleans() | st.integers(-2**70, 2**70) | st.sampled_from([0, -1, 1, 2**31, 2**63 - 1, 10**30])
    | st.floats() | st.text(max_size=12) | st.sampled_from(["", "..", "/", "mel", "fcn", "synth", "knn", "run2"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


def paths(document: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path into ``document`` (tables and lists)."""
    out = [prefix]
    if isinstance(document, dict):
        for k, v in document.items():
            out += paths(v, (*prefix, k))
    elif isinstance(document, list):
        for i, v in enumerate(document):
            out += paths(v, (*prefix, i))
    return out


@st.composite
def hostile_documents(draw: st.DrawFn) -> dict[str, Any]:
    """The valid pipeline with a few keys replaced by random values, or random keys added."""
    document = json.loads(json.dumps(VALID))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(paths(document)[1:]))
        parent = document
        for key in where[:-1]:
            parent = parent[key]
        if draw(st.booleans()) and isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(toml_values)
        else:
            parent[where[-1]] = draw(toml_values)
    return document


def dry_run(path: Path) -> None:
    code, err = cli("run", "--dry-run", path)
    if code != 0:
        last = err.strip().splitlines()[-1]
        assert code == 2 and last.startswith("musicrep: error: "), err
        assert str(path) in last, last


@FUZZ
@given(content=st.one_of(st.binary(max_size=512), mutated(toml_text(VALID).encode()),
                         hostile_documents().map(lambda d: toml_text(d).encode())))
def test_load_pipeline_returns_or_names_the_file(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pipeline.toml"
        path.write_bytes(content)
        returns_or_one_line(lambda: load_pipeline(path), path)


@scaled(3)
@given(document=hostile_documents())
def test_a_dry_run_returns_or_names_the_file(document: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pipeline.toml"
        path.write_text(toml_text(document))
        returns_or_one_line(lambda: dry_run(path), path)
        assert not (Path(tmp) / "runs").exists()


def test_the_valid_pipeline_dry_runs(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.toml"
    path.write_text(toml_text(VALID))
    dry_run(path)


def refused(tmp_path: Path, document: dict[str, Any], *words: str, names_toml: bool = True) -> str:
    path = tmp_path / "pipeline.toml"
    path.write_text(toml_text(document))
    code, err = cli("run", path)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"musicrep: error: {path if names_toml else ''}"), lines
    for word in words:
        assert word in lines[0], lines
    assert not (tmp_path / "runs").exists()  # refused before the run directory exists
    return lines[0]


@pytest.mark.parametrize("section", ["embed", "pretrain"])
def test_a_worker_count_beyond_the_machine_is_refused(tmp_path: Path, section: str) -> None:
    document = json.loads(json.dumps(VALID))
    workers = MAX_WORKERS + int(np.random.default_rng().integers(1, 2000))
    if section == "embed":
        document["embed"]["num_workers"] = workers
    else:
        document["models"]["small"]["pretrain"] = {"objective": {"type": "simclr"}, "data": ["pitch"],
                                                   "num_workers": workers}
    refused(tmp_path, document, "num_workers", str(workers))


def test_an_encoder_too_large_for_the_memory_is_refused_before_allocation(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Within every range, yet larger than the memory allowed (here made small, so that a build
    that is not refused would still fit this machine)."""
    import musicrep.registry

    width = int(np.random.default_rng().integers(256, 512))  # two stages: ~9 x width^2 weights, > 2 MiB
    monkeypatch.setattr(musicrep.registry, "memory_limit", lambda: 2 * 2**20)  # half: 1 MiB allowed
    document = json.loads(json.dumps(VALID))
    document["models"]["small"]["encoder"] = {"type": "fcn", "channels": [width, width], "dim": 4}
    refused(tmp_path, document, "models.small", "parameters")


@pytest.mark.parametrize("target", ["audio", "random"])
def test_load_of_a_file_that_is_no_model_is_one_line_and_leaves_nothing(tmp_path: Path, target: str) -> None:
    (tmp_path / "audio").mkdir()
    path = tmp_path / "audio" / "x.wav"
    if target == "audio":
        sf.write(path, np.random.default_rng().uniform(-0.5, 0.5, 8000).astype(np.float32), 16000)
    else:
        path.write_bytes(np.random.default_rng().bytes(1000))
    document = json.loads(json.dumps(VALID))
    document["models"]["small"] = {"load": "audio/x.wav"}
    line = refused(tmp_path, document, str(path), names_toml=False)
    with pytest.raises(Exception) as caught:
        import musicrep

        musicrep.load_model(path)
    check_one_line(caught.value, (path,))
    assert "checkpoint" in line


@pytest.mark.parametrize("encoder", [
    {"type": "fcn", "channels": [1] * 17, "dim": 4},
    {"type": "fcn", "channels": [2], "dim": 10**9},
    {"type": "band-cnn", "channels": [2], "freq_pool": [1], "time_pool": [1], "bands": 10**6},
    {"type": "resnet", "channels": [4], "blocks": [10**5]},
])
def test_config_ranges_refuse_absurd_shapes_before_building(tmp_path: Path, encoder: dict[str, Any]) -> None:
    document = json.loads(json.dumps(VALID))
    document["models"]["small"]["encoder"] = encoder
    refused(tmp_path, document, "models.small.encoder")
