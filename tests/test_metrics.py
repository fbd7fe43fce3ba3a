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


# -- bootstrap intervals --------------------------------------------------------------------

def test_bootstrap_interval_of_accuracy_matches_the_binomial_interval() -> None:
    """With many items the bootstrap interval of an accuracy is the binomial one, p ± 1.96 sd."""
    from musicrep.metrics import bootstrap_interval

    rng = np.random.default_rng()
    n, c = 4000, int(rng.integers(2, 6))
    labels = rng.integers(0, c, n)
    correct = rng.random(n) < rng.uniform(0.6, 0.9)
    guesses = np.where(correct, labels, (labels + rng.integers(1, c, n)) % c)
    targets, scores = np.eye(c)[labels], np.eye(c)[guesses]
    p = accuracy(targets, scores, [])
    sd = np.sqrt(p * (1 - p) / n)
    low, high = bootstrap_interval(accuracy, targets, scores, [], n=1000, seed=int(rng.integers(1 << 31)))
    assert low < p < high
    # the percentile estimates carry Monte-Carlo error of about 0.09 sd at 1000 resamples
    assert low == pytest.approx(p - 1.96 * sd, abs=0.3 * sd)
    assert high == pytest.approx(p + 1.96 * sd, abs=0.3 * sd)


def test_bootstrap_interval_is_seeded_and_collapses_on_constant_results() -> None:
    from musicrep.metrics import bootstrap_interval

    rng = np.random.default_rng()
    n, c = int(rng.integers(20, 100)), 4
    targets = np.eye(c)[rng.integers(0, c, n)]
    assert bootstrap_interval(accuracy, targets, targets, [], seed=1) == (1.0, 1.0)  # always right
    assert bootstrap_interval(accuracy, targets, np.roll(targets, 1, axis=1), [], seed=1) == (0.0, 0.0)
    scores = rng.random((n, c))
    seed = int(rng.integers(1 << 31))
    first = bootstrap_interval(accuracy, targets, scores, [], n=200, seed=seed)
    assert first == bootstrap_interval(accuracy, targets, scores, [], n=200, seed=seed)
    assert first[0] <= accuracy(targets, scores, []) <= first[1]


def test_bootstrap_interval_is_none_where_undefined() -> None:
    from musicrep.metrics import bootstrap_interval

    assert bootstrap_interval(accuracy, np.eye(3)[:1], np.eye(3)[:1], []) is None  # one item
    never = np.zeros((30, 2))  # no label ever occurs: ROC-AUC is NaN on every resample
    assert bootstrap_interval(roc_auc, never, np.random.default_rng().random((30, 2)), [], n=50) is None


def test_bootstrap_over_folds_matches_the_mean_interval() -> None:
    from musicrep.metrics import bootstrap_mean_interval

    rng = np.random.default_rng()
    assert bootstrap_mean_interval([0.7] * 5) == (0.7, 0.7)
    values = rng.normal(0.8, 0.05, 400)
    se = values.std() / np.sqrt(len(values))
    low, high = bootstrap_mean_interval(values, seed=int(rng.integers(1 << 31)))
    assert low == pytest.approx(values.mean() - 1.96 * se, abs=0.3 * se)
    assert high == pytest.approx(values.mean() + 1.96 * se, abs=0.3 * se)
    assert bootstrap_mean_interval([0.5]) is None
