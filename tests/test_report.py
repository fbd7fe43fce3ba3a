"""The report: intervals in the table, the best marked only where the intervals say so, old
results still shown, report.md self-contained, plots that tell close values apart."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from musicrep.plots import class_style, value_axis
from musicrep.report import CLEAR, TIED, UNJUDGED, collect, table, write_report


def write_result(run_dir: Path, model: str, task: str, value: float, interval: list[float] | None,
                 probe: str = "linear", **extra) -> None:
    result = {"probe": probe, "kind": "multiclass", "primary": "accuracy", "chosen": {"c": 1.0, "valid_score": 0.9},
              "metrics": {"valid": {"accuracy": value + 0.01}, "test": {"accuracy": value}},
              "n": {"train": 100, "valid": 20, "test": 50}, "seed": 0, **extra}
    if interval is not None:
        result["interval"] = {"level": 0.95, "resamples": 1000, "over": "test items", "test": {"accuracy": interval}}
    path = run_dir / "probes" / model / task / f"{probe}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))


def marks_of(run_dir: Path) -> dict[str, str]:
    return {r["model"]: r["mark"] for r in collect(run_dir) if r["primary"] and r["split"] == "test"}


def test_best_is_marked_only_when_its_interval_is_clear(tmp_path: Path) -> None:
    rng = np.random.default_rng()
    best = rng.uniform(0.7, 0.9)
    gap = rng.uniform(0.03, 0.08)
    write_result(tmp_path, "a", "t", best, [best - 0.01, best + 0.01])
    write_result(tmp_path, "b", "t", best - gap, [best - gap - 0.01, best - gap + 0.005])
    write_result(tmp_path, "c", "t", best - 2 * gap, [best - 2 * gap - 0.01, best - 2 * gap + 0.01])
    assert marks_of(tmp_path) == {"a": CLEAR, "b": "", "c": ""}
    header, body = table(collect(tmp_path))
    assert header == ["task", "probe", "metric", "a", "b", "c"]
    assert body[0][3] == f"{best:.3f} ±0.010 {CLEAR}"


def test_overlapping_intervals_mark_a_tie(tmp_path: Path) -> None:
    rng = np.random.default_rng()
    best = rng.uniform(0.7, 0.9)
    write_result(tmp_path, "a", "t", best, [best - 0.01, best + 0.01])
    write_result(tmp_path, "b", "t", best - 0.02, [best - 0.025, best - 0.015])  # the runner-up: clear of a
    write_result(tmp_path, "c", "t", best - 0.04, [best - 0.09, best + 0.005])   # wide: overlaps a
    # a model whose interval overlaps the best's spoils the win even where the runner-up's does not
    assert marks_of(tmp_path) == {"a": TIED, "b": "", "c": TIED}
    text = write_report(tmp_path)
    assert f"{TIED}: tied for best" in text.splitlines()[-1]
    report = (tmp_path / "report.md").read_text()
    assert f"\\{TIED}" in report  # escaped: a bare ~ is markup in markdown


def test_results_without_intervals_still_render(tmp_path: Path) -> None:
    write_result(tmp_path, "old", "t", 0.8, None)
    write_result(tmp_path, "new", "t", 0.7, [0.65, 0.75])
    rows = collect(tmp_path)
    old = next(r for r in rows if r["model"] == "old" and r["split"] == "test")
    assert old["low"] is None and old["mark"] == UNJUDGED
    header, body = table(rows)
    assert body[0][header.index("old")] == f"0.800 {UNJUDGED}"
    assert body[0][header.index("new")] == "0.700 ±0.050"
    write_report(tmp_path)
    csv_text = (tmp_path / "results.csv").read_text()
    assert csv_text.splitlines()[0] == "model,task,probe,split,metric,value,low,high,mark,primary"
    assert (tmp_path / "plots" / "t-linear.png").stat().st_size > 0


def test_report_holds_what_a_reader_needs(tmp_path: Path) -> None:
    write_result(tmp_path, "a", "t", 0.9, [0.85, 0.95],
                 skipped=[{"id": "x", "path": "/data/x.wav", "reason": "empty file (0 bytes)"}])
    write_result(tmp_path, "b", "t", 0.6, [0.55, 0.65], skipped=[])
    (tmp_path / "models" / "a").mkdir(parents=True)
    losses = np.exp(-np.linspace(0, 3, 40)) + 0.1
    (tmp_path / "models" / "a" / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": i + 1, "loss": float(v), "lr": 1e-3}) + "\n" for i, v in enumerate(losses))
        + '{"step": 41, "lo')  # the torn line a kill leaves
    (tmp_path / "pipeline.toml").write_text('[run]\nname = "x"\nseed = 7\n')
    write_report(tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "100 / 20 / 50" in report                      # split sizes
    assert "0.9100" in report and "0.9000" in report      # valid and test scores
    assert "| c=1 " in report                             # the chosen settings
    assert "`/data/x.wav`: empty file (0 bytes)" in report
    assert "seed = 7" in report                           # the run's settings
    for link in ("plots/t-linear.png", "plots/loss-a.png"):
        assert f"({link})" in report and (tmp_path / link).stat().st_size > 0
    assert f"40 steps; loss {losses[0]:.4f} at the first step, {losses[-1]:.4f} at the last" in report


def test_value_axis_separates_close_values() -> None:
    rng = np.random.default_rng()
    a = rng.uniform(0.85, 0.95)
    low, high = value_axis([a - 0.01, a + 0.02], [a + 0.01, a + 0.05])
    assert 0 < low < a - 0.01 and high > a + 0.05
    assert (0.04) / (high - low) > 0.3  # the 0.04 between the bars fills a visible share of the axis
    assert value_axis([0.005], [0.03])[0] == 0.0  # a non-negative metric gets no negative axis


@pytest.mark.parametrize("n_classes", [12, 24])
def test_every_class_gets_its_own_style(n_classes: int) -> None:
    styles = {(s["color"], s["marker"]) for s in map(class_style, range(n_classes))}
    assert len(styles) == n_classes
