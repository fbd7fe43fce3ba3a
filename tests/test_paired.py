"""Paired comparisons: the best model is marked by a test of its difference from each other
model on the same test items, not by two intervals overlapping."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from musicrep.metrics import metric_interval, roc_auc
from musicrep.paired import MCNEMAR, PAIRED_BOOTSTRAP, compare, mcnemar_exact
from musicrep.report import CLEAR, TIED, collect, write_report


def write_items(run_dir: Path, model: str, targets: np.ndarray, scores: np.ndarray, metric: str,
                kind: str = "multiclass") -> None:
    """A probe result as ``probe_store`` writes it, test items included."""
    from musicrep.metrics import get_metric
    from musicrep.probing import item_record

    names = [f"l{i}" for i in range(targets.shape[1])]
    value = get_metric(metric)(targets, scores, names)
    low, high, method = metric_interval(metric, targets, scores, names, n=200)
    result = {"probe": "linear", "kind": kind, "primary": metric, "chosen": {},
              "metrics": {"valid": {metric: value}, "test": {metric: value}},
              "interval": {"level": 0.95, "resamples": 200, "over": "test items", "method": {metric: method},
                           "test": {metric: [low, high]}},
              "n": {"train": 100, "valid": 20, "test": len(targets)}, "seed": 0, "skipped": [],
              "items": item_record(np.array([f"id{i}" for i in range(len(targets))]), targets, scores, kind, names)}
    path = run_dir / "probes" / model / "t" / "linear.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))


def two_classifiers(rng: np.random.Generator, n: int, right_a: int, right_b: int, nested: bool):
    """Targets and two models' one-hot guesses: a right on ``right_a`` items, b on ``right_b``;
    ``nested``: b is right only where a is (every discordant item favours a), else b's right
    items are spread so that many items favour each model."""
    labels = rng.integers(0, 4, n)
    order = rng.permutation(n)
    a_right = np.zeros(n, bool)
    a_right[order[:right_a]] = True
    b_right = np.zeros(n, bool)
    if nested:
        b_right[order[:right_b]] = True
    else:  # b is also right on 30 items a gets wrong
        b_right[order[right_a:right_a + 30]] = True
        b_right[order[:right_b - 30]] = True
    wrong = (labels + rng.integers(1, 4, n)) % 4
    guesses = [np.eye(4)[np.where(right, labels, wrong)] for right in (a_right, b_right)]
    return np.eye(4)[labels], guesses[0], guesses[1]


def test_mcnemar_matches_the_exact_binomial_test() -> None:
    from scipy.stats import binomtest

    rng = np.random.default_rng()
    a, b = rng.random(300) < 0.7, rng.random(300) < 0.6
    only_a, only_b, p = mcnemar_exact(a, b)
    assert (only_a, only_b) == (int(np.sum(a & ~b)), int(np.sum(~a & b)))
    assert p == pytest.approx(binomtest(only_a, only_a + only_b, 0.5).pvalue)
    assert mcnemar_exact(a, a)[2] == 1.0  # no discordant item: no evidence either way


def test_overlapping_intervals_with_a_clear_paired_difference(tmp_path: Path) -> None:
    """a is right on 140 of 200 items, b on 128, all of them among a's: the Wilson intervals
    overlap (the old rule said tied), but a wins all 12 discordant items (McNemar p = 2^-11)."""
    rng = np.random.default_rng()
    targets, a, b = two_classifiers(rng, 200, 140, 128, nested=True)
    write_items(tmp_path, "a", targets, a, "accuracy")
    write_items(tmp_path, "b", targets, b, "accuracy")
    rows = {r["model"]: r for r in collect(tmp_path) if r["primary"] and r["split"] == "test"}
    assert rows["a"]["low"] < rows["b"]["high"]  # the intervals overlap
    assert rows["a"]["mark"] == CLEAR and rows["b"]["mark"] == "" and rows["a"]["judged"] == "paired"
    assert rows["b"]["paired_test"] == MCNEMAR and rows["b"]["versus"] == "a"
    assert rows["b"]["p_value"] == pytest.approx(2 * 0.5 ** 12)
    assert rows["b"]["difference"] == pytest.approx(0.06)
    write_report(tmp_path)
    assert "McNemar exact, p = 0.000488: clear" in (tmp_path / "report.md").read_text()
    saved = {r["model"]: r for r in json.loads((tmp_path / "results.json").read_text())
             if r["primary"] and r["split"] == "test"}
    assert saved["b"]["p_value"] == pytest.approx(2 * 0.5 ** 12) and saved["b"]["paired_test"] == MCNEMAR


def test_the_same_scores_without_a_consistent_difference_tie(tmp_path: Path) -> None:
    """The reverse: the same accuracies and intervals, but b is right on 30 items a gets wrong,
    so 42 discordant items favour a and 30 favour b: no clear paired difference (p ~ 0.19)."""
    rng = np.random.default_rng()
    targets, a, b = two_classifiers(rng, 200, 140, 128, nested=False)
    write_items(tmp_path, "a", targets, a, "accuracy")
    write_items(tmp_path, "b", targets, b, "accuracy")
    rows = {r["model"]: r for r in collect(tmp_path) if r["primary"] and r["split"] == "test"}
    assert rows["a"]["mark"] == TIED and rows["b"]["mark"] == TIED
    assert rows["b"]["p_value"] == pytest.approx(mcnemar_exact(np.arange(72) < 42, np.arange(72) >= 42)[2])
    assert rows["b"]["p_value"] > 0.05


def test_paired_bootstrap_finds_a_consistent_ranking_loss() -> None:
    """Ranking metric: b is a with 25 of 400 items' positive scores pushed below every negative.
    Each model's interval overlaps the other's; the paired interval of the difference does not
    reach 0, since the difference is positive on every resample that draws one of them."""
    rng = np.random.default_rng()
    n, labels = 400, 3
    targets = (rng.random((n, labels)) < 0.3).astype(float)
    a = targets + rng.normal(0, 0.9, (n, labels))
    b = a.copy()
    hurt = rng.choice(n, 25, replace=False)
    b[hurt] = np.where(targets[hurt] == 1, a.min() - 1, b[hurt])
    seed = int(rng.integers(1 << 31))
    low_a, high_a, _ = metric_interval("roc_auc", targets, a, [], n=300, seed=seed)
    low_b, high_b, _ = metric_interval("roc_auc", targets, b, [], n=300, seed=seed)
    assert roc_auc(targets, a, []) > roc_auc(targets, b, []) and low_a < high_b  # overlapping intervals
    result = compare("roc_auc", targets, a, b, [], alpha=0.05, n=300, seed=seed)
    assert result.method == PAIRED_BOOTSTRAP and result.better and 0 < result.low <= result.difference
    reverse = compare("roc_auc", targets, b, a, [], alpha=0.05, n=300, seed=seed)
    assert not reverse.better and reverse.high < 0  # the worse model is never marked better


def test_models_without_items_fall_back_to_intervals(tmp_path: Path) -> None:
    rng = np.random.default_rng()
    targets, a, b = two_classifiers(rng, 200, 140, 128, nested=True)
    write_items(tmp_path, "a", targets, a, "accuracy")
    write_items(tmp_path, "b", targets, b, "accuracy")
    path = tmp_path / "probes" / "b" / "t" / "linear.json"
    older = json.loads(path.read_text())
    del older["items"]
    path.write_text(json.dumps(older))
    rows = {r["model"]: r for r in collect(tmp_path) if r["primary"] and r["split"] == "test"}
    assert rows["a"]["judged"] == "intervals" and rows["a"]["mark"] == TIED
