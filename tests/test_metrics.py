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


# -- intervals that never claim certainty -------------------------------------------------------

def wilson_from_formula(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson (1927): (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def one_hot_results(correct: int, n: int, classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, classes, n)
    right = rng.permutation(np.arange(n) < correct)
    guesses = np.where(right, labels, (labels + rng.integers(1, classes, n)) % classes)
    return np.eye(classes)[labels], np.eye(classes)[guesses]


@pytest.mark.parametrize("correct, n", [(5, 5), (0, 5), (1, 1)])
def test_accuracy_interval_on_small_sets_is_wilson_and_never_certain(correct: int, n: int) -> None:
    from musicrep.metrics import WILSON, metric_interval

    rng = np.random.default_rng()
    targets, scores = one_hot_results(correct, n, 4, rng)
    low, high, method = metric_interval("accuracy", targets, scores, [], seed=int(rng.integers(1 << 31)))
    expected = wilson_from_formula(correct, n)
    assert method == WILSON
    assert (low, high) == pytest.approx(expected, abs=1e-12)
    assert high - low > 0.3  # a handful of items never make a score certain
    if correct == n:
        assert high == 1.0 and low == pytest.approx(n / (n + 1.959963984540054 ** 2))


def test_accuracy_interval_on_a_large_set_matches_scipy() -> None:
    from scipy.stats import binomtest
    from musicrep.metrics import metric_interval

    rng = np.random.default_rng()
    n = int(rng.integers(2000, 5000))
    correct = int(rng.integers(n // 4, n))
    targets, scores = one_hot_results(correct, n, 5, rng)
    low, high, _ = metric_interval("accuracy", targets, scores, [])
    reference = binomtest(correct, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert (low, high) == pytest.approx((reference.low, reference.high), abs=1e-9)
    assert low < correct / n < high


@pytest.mark.parametrize("name", ["roc_auc", "pr_auc", "key_weighted"])
def test_bounded_metrics_on_perfect_small_sets_keep_the_wilson_width(name: str) -> None:
    """A percentile bootstrap of a perfect score on 5 items is [1, 1]; the reported interval is
    widened to the Wilson interval of 1.0 over 5 items, and the method says so."""
    from musicrep.metrics import BOOTSTRAP_WILSON, bootstrap_interval, get_metric, metric_interval

    rng = np.random.default_rng()
    keys = ["C major", "A minor", "G major"]
    targets = np.eye(3)[[0, 1, 2, 0, 1]]
    scores = targets * rng.uniform(0.6, 1.0, (5, 1)) + rng.uniform(0, 0.1, (5, 3)) * (1 - targets)
    assert get_metric(name)(targets, scores, keys) == 1.0
    seed = int(rng.integers(1 << 31))
    resampled = bootstrap_interval(get_metric(name), targets, scores, keys, n=200, seed=seed)
    assert resampled is None or resampled[0] == resampled[1] == 1.0  # what the old report printed
    low, high, method = metric_interval(name, targets, scores, keys, n=200, seed=seed)
    assert method == BOOTSTRAP_WILSON
    assert (low, high) == pytest.approx(wilson_from_formula(5, 5))


def test_r2_interval_is_a_named_bootstrap_and_none_when_degenerate() -> None:
    from musicrep.metrics import BOOTSTRAP, metric_interval

    rng = np.random.default_rng()
    y = rng.standard_normal((300, 2))
    noisy = y + 0.5 * rng.standard_normal((300, 2))
    low, high, method = metric_interval("r2", y, noisy, [], n=300, seed=int(rng.integers(1 << 31)))
    assert method == BOOTSTRAP and low < r2(y, noisy, []) < high and high - low > 0.01
    assert metric_interval("r2", y[:1], noisy[:1], []) is None  # one item: no interval, not a point


def test_fold_interval_pools_items_for_accuracy() -> None:
    from musicrep.metrics import WILSON, fold_interval

    low, high, method = fold_interval("accuracy", [1.0] * 5, 60)
    assert method == WILSON and high == 1.0 and low == pytest.approx(wilson_from_formula(60, 60)[0])
