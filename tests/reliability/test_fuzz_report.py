"""Fuzz the readers ``musicrep report`` uses on a run folder someone else made: probe result
JSONs, the run's pipeline.toml and the pre-training logs. Random, mutated and hostile inputs
each end in a report (a damaged result named on stderr and left out) or one MusicrepError line
naming the file: never a traceback."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from musicrep import plots, report as report_module
from musicrep.cli import main
from musicrep.errors import MusicrepError
from musicrep.probing import item_record

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


def valid_result(rng: np.random.Generator, metric: str = "accuracy") -> dict[str, Any]:
    targets = np.eye(3)[rng.integers(0, 3, 20)]
    scores = rng.random((20, 3))
    value = float(rng.random())
    return {"probe": "linear", "kind": "multiclass", "primary": metric, "chosen": {"c": 1.0},
            "metrics": {"valid": {metric: value}, "test": {metric: value}},
            "interval": {"level": 0.95, "over": "test items", "method": {metric: "Wilson score"},
                         "test": {metric: [max(0, value - 0.1), min(1, value + 0.1)]}},
            "n": {"train": 60, "valid": 20, "test": 20}, "seed": 0, "skipped": [],
            "items": item_record(np.array([str(i) for i in range(20)]), targets, scores, "multiclass",
                                 ["a", "b", "c"])}


def paths_of(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into a JSON value, for mutation."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths_of(child, prefix + (key,))
    elif isinstance(value, list):
        for i, child in enumerate(value[:3]):
            found += paths_of(child, prefix + (i,))
    return found


def mutated(value: Any, path: tuple, replacement: Any) -> Any:
    if not path:
        return replacement
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: mutated(value[head], rest, replacement)}
    copy = list(value)
    copy[head] = mutated(copy[head], rest, replacement)
    return copy


def report_on(run: Path, capsys: pytest.CaptureFixture) -> None:
    """``musicrep report`` on ``run``: it returns 0, or 2 with one error line naming a file of
    the run; either way no exception escapes."""
    code = main(["report", str(run)])
    err = capsys.readouterr().err
    assert code in (0, 2), err
    if code == 2:
        lines = [line for line in err.splitlines() if line.startswith("musicrep: error:")]
        assert len(lines) == 1 and str(run) in lines[0], err


def fresh_run(results: dict[str, Any]) -> Path:
    run = Path(tempfile.mkdtemp(prefix="fuzz-report-"))
    for model, result in results.items():
        path = run / "probes" / model / "t" / "linear.json"
        path.parent.mkdir(parents=True)
        path.write_text(result if isinstance(result, str) else json.dumps(result))
    return run


#: examples per fuzz test: CI's default keeps the file under 20 s; a soak sets more
#: (``MUSICREP_FUZZ_EXAMPLES=5000 pytest tests/reliability/test_fuzz_report.py``)
EXAMPLES = int(os.environ.get("MUSICREP_FUZZ_EXAMPLES", "120"))

NO_FIGURES = [mock.patch.object(report_module, "bar_charts", lambda *a, **k: []),
              mock.patch.object(report_module, "loss_curve", lambda *a, **k: None)]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)
@given(data=st.data())
def test_mutated_probe_results(data: st.DataObject, capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    base = valid_result(rng, data.draw(st.sampled_from(["accuracy", "roc_auc", "key_weighted", "r2"])))
    path = data.draw(st.sampled_from(paths_of(base)))
    damaged = mutated(base, path, data.draw(JSON))
    run = fresh_run({"a": damaged, "b": valid_result(rng, base["primary"])})
    try:
        for patch in NO_FIGURES:
            patch.start()
        report_on(run, capsys)
    finally:
        mock.patch.stopall()
        shutil.rmtree(run)


@settings(max_examples=max(1, EXAMPLES // 2), deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=st.binary(max_size=300) | JSON.map(json.dumps), toml=st.text(max_size=200), log=st.binary(max_size=200))
def test_random_files(raw: str | bytes, toml: str, log: bytes, capsys: pytest.CaptureFixture) -> None:
    run = fresh_run({"a": valid_result(np.random.default_rng())})
    try:
        bad = run / "probes" / "b" / "t" / "linear.json"
        bad.parent.mkdir(parents=True)
        bad.write_bytes(raw if isinstance(raw, bytes) else raw.encode())
        (run / "pipeline.toml").write_text(toml, errors="surrogateescape") if "\udc80" not in toml else None
        (run / "models" / "m").mkdir(parents=True)
        (run / "models" / "m" / "metrics.jsonl").write_bytes(log)
        with NO_FIGURES[0]:
            report_on(run, capsys)
    finally:
        shutil.rmtree(run)


@pytest.mark.parametrize("damage", [
    '{"metrics": {"test": {"accuracy": 1e308}}, "primary": "accuracy"}',
    '{"metrics": {"test": {"r2": -Infinity}, "valid": {}}, "primary": "r2"}',
    '[' * 100_000 + ']' * 100_000,
    '{"metrics": {"test": {"accuracy": 0.5}}, "primary": "accuracy", "items": {"ids": ["a"], "label_names": '
    + json.dumps(["x"] * 100_000) + ', "target": [99999], "predicted": [0]}}',
])
def test_hostile_results_with_figures(tmp_path: Path, damage: str, capsys: pytest.CaptureFixture) -> None:
    """Numbers that break a figure's axes, nesting deeper than the parser's stack, a vocabulary
    that would ask for a huge array: the report still comes, figures included."""
    rng = np.random.default_rng()
    run = tmp_path / "run"
    for model, text in (("a", damage), ("b", json.dumps(valid_result(rng))), ("c", json.dumps(valid_result(rng)))):
        path = run / "probes" / model / "t" / "linear.json"
        path.parent.mkdir(parents=True)
        path.write_text(text)
    report_on(run, capsys)
    assert (run / "report.md").is_file()
