"""Paired comparisons: is model A better than model B on the same test items?

Every model of a run is scored on the same test items, so the question is about the
difference of their scores item by item, not about whether two intervals overlap (two
overlapping 95 % intervals can hide a clear paired difference, since the items' difficulty
moves both scores together, and two disjoint ones say less than a test of the difference).

- accuracy: McNemar's exact test, the exact two-sided binomial test on the discordant items
  (those one model gets right and the other wrong), which is all a paired 0/1 outcome tells;
- every other metric: a paired percentile bootstrap of the difference, both models scored on
  the same resampled items; the difference is clear when its interval excludes 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from musicrep.metrics import PROPORTIONS, _percentiles, get_metric

MCNEMAR = "McNemar exact"
PAIRED_BOOTSTRAP = "paired bootstrap"


@dataclass(frozen=True)
class Comparison:
    """``a`` against ``b`` on one metric: the difference (a - b), how it was tested, the
    two-sided p-value (McNemar) or the interval of the difference (bootstrap), and whether
    ``a`` is clearly better at the asked level."""

    method: str
    difference: float
    p: float | None
    low: float | None
    high: float | None
    better: bool


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[int, int, float]:
    """(items only a gets right, items only b gets right, two-sided exact p-value)."""
    from scipy.stats import binom

    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    discordant = only_a + only_b
    p = 1.0 if not discordant else min(1.0, 2 * float(binom.cdf(min(only_a, only_b), discordant, 0.5)))
    return only_a, only_b, p


def paired_bootstrap(name: str, targets: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray,
                     label_names: list[str], *, n: int = 1000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float] | None:
    """The ``level`` percentile interval of metric(a) - metric(b) over ``n`` resamples of the
    items, both models scored on the same resample; None under two items or all NaN."""
    if len(targets) < 2:
        return None
    metric = get_metric(name)
    rng = np.random.default_rng(seed)
    differences = np.empty(n)
    for i in range(n):
        idx = rng.integers(0, len(targets), len(targets))
        differences[i] = (metric(targets[idx], scores_a[idx], label_names)
                          - metric(targets[idx], scores_b[idx], label_names))
    return _percentiles(differences, level)


def compare(name: str, targets: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, label_names: list[str],
            *, alpha: float = 0.05, n: int = 1000, seed: int = 0) -> Comparison:
    """Whether ``a`` is better than ``b`` on metric ``name`` over the same items, at level
    ``alpha`` (two-sided): McNemar's exact test for accuracy, else a paired bootstrap."""
    metric = get_metric(name)
    difference = float(metric(targets, scores_a, label_names) - metric(targets, scores_b, label_names))
    if name in PROPORTIONS:
        truth = targets.argmax(axis=1)
        only_a, only_b, p = mcnemar_exact(scores_a.argmax(axis=1) == truth, scores_b.argmax(axis=1) == truth)
        return Comparison(MCNEMAR, difference, p, None, None, only_a > only_b and p < alpha)
    interval = paired_bootstrap(name, targets, scores_a, scores_b, label_names, n=n, seed=seed, level=1 - alpha)
    if interval is None:
        return Comparison(PAIRED_BOOTSTRAP, difference, None, None, None, False)
    return Comparison(PAIRED_BOOTSTRAP, difference, None, interval[0], interval[1], interval[0] > 0)
