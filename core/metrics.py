"""Metrics by task kind; each takes multi-hot (or value) targets and the probe's scores.

Higher is better for every metric here, so the probe runner can select on any of them.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from musicrep.keys import parse_key
from musicrep.errors import MusicrepError

Metric = Callable[[np.ndarray, np.ndarray, list[str]], float]


def accuracy(targets: np.ndarray, scores: np.ndarray, label_names: list[str]) -> float:
    return float(np.mean(targets.argmax(axis=1) == scores.argmax(axis=1)))


def _scored_columns(targets: np.ndarray) -> np.ndarray:
    """Labels with both positives and negatives: the only ones a ranking metric is defined for."""
    positives = targets.sum(axis=0)
    return np.flatnonzero((positives > 0) & (positives < len(targets)))


def roc_auc(targets: np.ndarray, scores: np.ndarray, label_names: list[str]) -> float:
    """Macro ROC-AUC over the labels that occur (and are absent) in the evaluated split."""
    cols = _scored_columns(targets)
    if not len(cols):
        return float("nan")
    from sklearn import metrics as skm  # imported when used: it costs seconds at start-up

    return float(skm.roc_auc_score(targets[:, cols], scores[:, cols], average="macro"))


def pr_auc(targets: np.ndarray, scores: np.ndarray, label_names: list[str]) -> float:
    """Macro average precision (PR-AUC) over the labels that occur in the evaluated split."""
    cols = _scored_columns(targets)
    if not len(cols):
        return float("nan")
    from sklearn import metrics as skm

    return float(skm.average_precision_score(targets[:, cols], scores[:, cols], average="macro"))


def r2(targets: np.ndarray, scores: np.ndarray, label_names: list[str]) -> float:
    from sklearn import metrics as skm

    return float(skm.r2_score(targets, scores, multioutput="uniform_average"))


def key_score(reference: str, estimate: str) -> float:
    """MIREX key score: 1 same key, 0.5 perfect fifth above, 0.3 relative, 0.2 parallel, else 0."""
    ref_tonic, ref_mode = parse_key(reference)
    est_tonic, est_mode = parse_key(estimate)
    if (ref_tonic, ref_mode) == (est_tonic, est_mode):
        return 1.0
    if ref_mode == est_mode and (est_tonic - ref_tonic) % 12 == 7:
        return 0.5
    if ref_mode != est_mode:
        if ref_mode == "major" and (est_tonic - ref_tonic) % 12 == 9:
            return 0.3
        if ref_mode == "minor" and (est_tonic - ref_tonic) % 12 == 3:
            return 0.3
        if ref_tonic == est_tonic:
            return 0.2
    return 0.0


def key_weighted(targets: np.ndarray, scores: np.ndarray, label_names: list[str]) -> float:
    """Mean MIREX weighted key score of the arg-max estimate."""
    refs = targets.argmax(axis=1)
    ests = scores.argmax(axis=1)
    return float(np.mean([key_score(label_names[r], label_names[e]) for r, e in zip(refs, ests)]))


METRICS: dict[str, Metric] = {
    "accuracy": accuracy,
    "roc_auc": roc_auc,
    "pr_auc": pr_auc,
    "r2": r2,
    "key_weighted": key_weighted,
}

def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise MusicrepError(f"unknown metric '{name}'; available: {', '.join(sorted(METRICS))}")
    return METRICS[name]


# -- uncertainty ---------------------------------------------------------------------------
# A result without its spread invites reading noise as a ranking: a few test clips separate
# the demo's models. An interval must also never claim certainty it does not have: a
# percentile bootstrap of 5 right answers out of 5 is [1, 1], as if a sixth item could not be
# wrong. So each metric gets the interval that stays honest at the edges and on small sets:
#
# - accuracy, a binomial proportion (the mean of per-item 0/1): the Wilson score interval,
#   which is never of zero width (5/5 gives [0.566, 1] at 95 %) and keeps its coverage near
#   the nominal level at any n, unlike the Wald (p +- z sd) or a percentile bootstrap;
# - the other metrics bounded in [0, 1] (ROC-AUC, PR-AUC, the MIREX key score): a percentile
#   bootstrap over the items, widened to contain the Wilson interval of the same value over
#   the same number of items. The widening is the guarantee against a zero-width interval: a
#   bootstrap whose resamples all score 1.0 still reports the uncertainty of n items, and it
#   is conservative rather than optimistic (a mean of per-item scores in [0, 1] has a variance
#   of at most p(1-p), the binomial one; a ranking metric rests on fewer independent units,
#   the positives and negatives, than n);
# - R², unbounded below: a percentile bootstrap; a zero-width one (every resample scores the
#   same) is reported as no interval at all, never as certainty.

#: metrics that are the mean of a per-item 0/1 outcome: a binomial proportion
PROPORTIONS = frozenset({"accuracy"})
#: metrics that lie in [0, 1], whose bootstrap interval is widened to the Wilson interval
BOUNDED = frozenset({"accuracy", "roc_auc", "pr_auc", "key_weighted"})
#: how each kind of interval is named in results, the report's legend and docs/probes.md
WILSON = "Wilson score"
BOOTSTRAP_WILSON = "percentile bootstrap, widened to the Wilson interval"
BOOTSTRAP = "percentile bootstrap"


def wilson_interval(successes: float, n: int, level: float = 0.95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion ``successes / n`` (``successes`` may be a sum of
    per-item scores in [0, 1]); None for no items. Never of zero width, inside [0, 1]."""
    if n <= 0:
        return None
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + level / 2))
    p = min(max(successes / n, 0.0), 1.0)
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = max(0.0, float(centre - half)), min(1.0, float(centre + half))
    # at the edges the bound is exact (p = 1 gives high = 1), not 1 less a rounding error
    return (0.0 if p == 0 else low), (1.0 if p == 1 else high)


def metric_interval(name: str, targets: np.ndarray, scores: np.ndarray, label_names: list[str], *,
                    n: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float, str] | None:
    """The ``level`` interval of metric ``name`` over the items (rows) and the name of its method
    (``WILSON``, ``BOOTSTRAP_WILSON`` or ``BOOTSTRAP``, see above); None where it is undefined
    (no items, or a metric that is NaN)."""
    metric = get_metric(name)
    value = metric(targets, scores, label_names)
    if not len(targets) or value != value:
        return None
    return _interval_of_kind(name, value, len(targets), level, lambda: bootstrap_interval(
        metric, targets, scores, label_names, n=n, seed=seed, level=level))


def _interval_of_kind(name: str, value: float, items: int, level: float,
                      resample: Callable[[], tuple[float, float] | None]) -> tuple[float, float, str] | None:
    """The interval the table above gives metric ``name`` scoring ``value`` over ``items`` items:
    Wilson for a proportion; else the percentile bootstrap ``resample()`` (called only then),
    widened to Wilson where the metric is bounded, and no interval where it has zero width."""
    if name in PROPORTIONS:
        return (*wilson_interval(value * items, items, level), WILSON)
    resampled = resample()
    if name in BOUNDED:
        floor = wilson_interval(value * items, items, level)
        if resampled is None:
            return (*floor, BOOTSTRAP_WILSON)
        return min(resampled[0], floor[0]), max(resampled[1], floor[1]), BOOTSTRAP_WILSON
    if resampled is None or resampled[0] == resampled[1]:
        return None
    return (*resampled, BOOTSTRAP)


def bootstrap_interval(metric: Metric, targets: np.ndarray, scores: np.ndarray, label_names: list[str], *,
                       n: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float] | None:
    """The ``level`` percentile-bootstrap interval of ``metric`` over the items (rows): ``n``
    resamples with replacement, seeded. None when it is undefined (under two items, or every
    resample's metric is NaN, e.g. a label that never varies). It collapses to a point when
    every resample scores the same: ``metric_interval`` is what results report."""
    if len(targets) < 2:
        return None
    rng = np.random.default_rng(seed)
    values = np.empty(n)
    for i in range(n):  # one resample at a time: a [n, items] index matrix can outgrow memory
        idx = rng.integers(0, len(targets), len(targets))
        values[i] = metric(targets[idx], scores[idx], label_names)
    return _percentiles(values, level)


def fold_interval(name: str, fold_values: Sequence[float], items: int, *, n: int = 1000, seed: int = 0,
                  level: float = 0.95) -> tuple[float, float, str] | None:
    """The interval of a k-fold task's mean score: each item is tested once, in its fold, so a
    proportion (accuracy) gets the Wilson interval of the mean over all ``items``; the other
    metrics a percentile bootstrap over the folds' scores (the folds are the independent units
    there), widened to the Wilson interval over ``items`` where the metric lies in [0, 1]."""
    values = np.asarray(fold_values, dtype=float)
    values = values[np.isfinite(values)]
    if not len(values) or items <= 0:
        return None
    mean = float(values.mean())
    return _interval_of_kind(name, mean, items, level,
                             lambda: bootstrap_mean_interval(values, n=n, seed=seed, level=level))


def bootstrap_mean_interval(values: Sequence[float], *, n: int = 1000, seed: int = 0,
                            level: float = 0.95) -> tuple[float, float] | None:
    """The ``level`` percentile-bootstrap interval of the mean of ``values``."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return None
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n, len(values)))].mean(axis=1)
    return _percentiles(means, level)


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float] | None:
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)
