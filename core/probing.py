"""The probe stage: fit a shallow model on frozen embeddings, select on valid, score on test."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from musicrep.errors import MusicrepError
from musicrep.layers import OUT
from musicrep.metrics import bootstrap_interval, bootstrap_mean_interval, get_metric
from musicrep.tasks import DEFAULT_METRICS, fold_roles
from musicrep.store import EmbeddingStore

Score = Callable[[np.ndarray, np.ndarray], float]

#: part of every probe result's cache key: a result written in an older format (without the
#: fields the report now shows) is probed again rather than shown incomplete
RESULT_FORMAT = 2
LEVEL, RESAMPLES = 0.95, 1000  # each test metric's bootstrap interval


@dataclass
class Split:
    x: np.ndarray  # [N, D] standardised embeddings
    y: np.ndarray  # [N, L] multi-hot targets or regression values


class Probe:
    """Base of probe plugins: ``fit`` selects hyper-parameters by ``score`` on ``valid``."""

    #: task kinds this probe can serve
    kinds: tuple[str, ...] = ("multiclass", "multilabel", "regression")
    #: whether a pipeline that names no probes runs this one
    default: bool = False

    def fit(self, train: Split, valid: Split, kind: str, score: Score, seed: int) -> dict[str, Any]:
        """Fit on train, choose by ``score(valid.y, scores)``; return the chosen settings."""
        raise NotImplementedError

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Scores: class probabilities (multiclass), label probabilities (multilabel) or values."""
        raise NotImplementedError


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Scale every split with the train split's mean and standard deviation."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    return [((a - mean) / std).astype(np.float32) for a in (train, *others)]


def split_valid(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, valid) carved from a train split that has no valid split of its own."""
    order = np.random.default_rng(seed).permutation(n)
    n_valid = max(1, int(round(n * fraction)))
    return np.sort(order[n_valid:]), np.sort(order[:n_valid])


def _fit_and_score(probe: Probe, kind: str, label_names: list[str], metric_names: list[str], seed: int,
                   train: tuple[np.ndarray, np.ndarray], valid: tuple[np.ndarray, np.ndarray],
                   test: tuple[np.ndarray, np.ndarray], intervals: bool = True,
                   ) -> tuple[dict[str, Any], dict[str, dict[str, float]], dict[str, list[float] | None]]:
    """The chosen settings, the metrics on valid and test, and (``intervals``) each test
    metric's bootstrap interval over the test items."""
    primary = get_metric(metric_names[0])
    x_train, x_valid, x_test = standardise(train[0], valid[0], test[0])

    def score(targets: np.ndarray, scores: np.ndarray) -> float:
        value = primary(targets, scores, label_names)
        return -np.inf if np.isnan(value) else value

    chosen = probe.fit(Split(x_train, train[1]), Split(x_valid, valid[1]), kind, score, seed)
    results = {}
    scores = {"valid": probe.predict(x_valid), "test": probe.predict(x_test)}
    for split_name, y in (("valid", valid[1]), ("test", test[1])):
        results[split_name] = {m: get_metric(m)(y, scores[split_name], label_names) for m in metric_names}
    bounds = {m: _listed(bootstrap_interval(get_metric(m), test[1], scores["test"], label_names, n=RESAMPLES,
                                            seed=seed, level=LEVEL))
              for m in metric_names} if intervals else {}
    return chosen, results, bounds


def _listed(interval: tuple[float, float] | None) -> list[float] | None:
    return None if interval is None else list(interval)


def probe_store(store_path: str | Path, probe: Probe, *, metrics: list[str] | None = None, seed: int = 0,
                probe_name: str = "probe", layer: str = OUT) -> dict[str, Any]:
    """Train ``probe`` on a finished store's embeddings of ``layer`` and report its metrics on
    valid and test.

    Stores with train/test splits (valid optional: carved from train when absent) are probed
    once. Stores whose splits are folds (k-fold tasks, no split named train) are probed once
    per fold: that fold is the test set, the next one the valid set, the rest train; the
    metrics are averaged over folds.

    Each test metric carries its bootstrap interval (``interval``): over the test items, or for
    k-fold tasks over the folds' scores, so a reader can tell a margin from noise.
    """
    with EmbeddingStore(store_path) as store:
        kind, label_names = store.kind, store.label_names
        if kind not in probe.kinds:
            raise MusicrepError(f"probe '{probe_name}' cannot serve {kind} tasks (it serves: "
                                f"{', '.join(probe.kinds)})")
        x_all, y_all, splits, skipped = store.embeddings(layer=layer), store.targets(), store.splits, store.skipped
    names = sorted(set(splits.tolist()))
    metric_names = list(metrics or DEFAULT_METRICS[kind])
    common = dict(probe=probe, kind=kind, label_names=label_names, metric_names=metric_names, seed=seed)
    if "train" in names and "test" in names:
        train = splits == "train"
        if "valid" in names:
            valid = splits == "valid"
        else:
            tr, va = split_valid(int(train.sum()), 0.15, seed)
            idx = np.flatnonzero(train)
            train, valid = np.isin(np.arange(len(splits)), idx[tr]), np.isin(np.arange(len(splits)), idx[va])
        test = splits == "test"
        chosen, results, bounds = _fit_and_score(**common, train=(x_all[train], y_all[train]),
                                                 valid=(x_all[valid], y_all[valid]), test=(x_all[test], y_all[test]))
        counts = {"train": int(train.sum()), "valid": int(valid.sum()), "test": int(test.sum())}
        interval = {"level": LEVEL, "resamples": RESAMPLES, "over": "test items", "test": bounds}
    elif "train" not in names and len(names) >= 3:
        per_fold, chosen = [], []
        for i in range(len(names)):
            roles = fold_roles(names, i)
            train, valid, test = (np.isin(splits, roles[role]) for role in ("train", "valid", "test"))
            c, r, _ = _fit_and_score(**common, train=(x_all[train], y_all[train]), intervals=False,
                                     valid=(x_all[valid], y_all[valid]), test=(x_all[test], y_all[test]))
            per_fold.append(r)
            chosen.append(c)
        results = {split: {m: float(np.mean([r[split][m] for r in per_fold])) for m in metric_names}
                   for split in ("valid", "test")}
        chosen = {"folds": chosen}
        counts = {"folds": len(names), "items": len(splits)}
        interval = {"level": LEVEL, "resamples": RESAMPLES, "over": "folds", "test": {
            m: _listed(bootstrap_mean_interval([r["test"][m] for r in per_fold], n=RESAMPLES, seed=seed, level=LEVEL))
            for m in metric_names}}
    else:
        raise MusicrepError(f"{store_path}: a probe needs 'train' and 'test' items, or at least 3 folds; "
                            f"the store has splits: {', '.join(names) or 'none'}")
    return {"probe": probe_name, "kind": kind, "primary": metric_names[0], "chosen": chosen,
            "metrics": results, "interval": interval, "n": counts, "seed": seed, "skipped": skipped}
