"""Metrics against scikit-learn and hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from musicrep.errors import MusicrepError
from musicrep.keys import parse_key
from musicrep.metrics import accuracy, key_score, key_weighted, pr_auc, r2, roc_auc


def test_classification_metrics_match_sklearn() -> None:
    rng = np.random.default_rng()
    n, c = int(rng.integers(20, 200)), int(rng.integers(2, 9))
    labels = rng.integers(0, c, n)
    onehot = np.eye(c)[labels]
    scores = rng.random((n, c)) + 0.8 * onehot
    assert accuracy(onehot, scores, []) == pytest.approx(skm.accuracy_score(labels, scores.argmax(1)))
    multi = (rng.random((n, c)) < 0.3).astype(float)
    multi[0], multi[1] = 1, 0  # every label both present and absent
    s = rng.random((n, c)) + 0.5 * multi
    assert roc_auc(multi, s, []) == pytest.approx(skm.roc_auc_score(multi, s, average="macro"))
    assert pr_auc(multi, s, []) == pytest.approx(skm.average_precision_score(multi, s, average="macro"))
    y = rng.standard_normal((n, 2))
    p = y + 0.3 * rng.standard_normal((n, 2))
    assert r2(y, p, []) == pytest.approx(skm.r2_score(y, p))


def test_ranking_metrics_skip_labels_without_both_classes() -> None:
    targets = np.array([[1, 0], [0, 0], [1, 0]], dtype=float)
    scores = np.array([[0.9, 0.1], [0.2, 0.5], [0.8, 0.3]])
    assert roc_auc(targets, scores, []) == pytest.approx(1.0)  # label 2 never occurs: left out


@pytest.mark.parametrize(("ref", "est", "score"), [
    ("C major", "C major", 1.0), ("C major", "G major", 0.5), ("A minor", "E minor", 0.5),
    ("C major", "F major", 0.0), ("C major", "A minor", 0.3), ("A minor", "C major", 0.3),
    ("C major", "C minor", 0.2), ("F# minor", "Gb minor", 1.0), ("Bb major", "F major", 0.5),
    ("E minor", "G major", 0.3), ("D major", "Eb major", 0.0),
])
def test_mirex_key_score(ref: str, est: str, score: float) -> None:
    assert key_score(ref, est) == score


def test_key_weighted_averages_argmax_estimates() -> None:
    names = ["C major", "G major", "A minor"]
    targets = np.eye(3)[[0, 0, 0, 2]]
    scores = np.eye(3)[[0, 1, 2, 0]]  # right, fifth, relative, relative
    assert key_weighted(targets, scores, names) == pytest.approx((1 + 0.5 + 0.3 + 0.3) / 4)
    assert parse_key("bb:min") == (10, "minor")
    with pytest.raises(MusicrepError, match="'banana'"):
        parse_key("banana")
