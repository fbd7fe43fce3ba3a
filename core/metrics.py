"""Metrics by task kind; each takes multi-hot (or value) targets and the probe's scores.

Higher is better for every metric here, so the probe runner can select on any of them.
"""
from __future__ import annotations

from typing import Callable

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
