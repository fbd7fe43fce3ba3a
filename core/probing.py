"""The probe stage: fit a shallow model on frozen embeddings, select on valid, score on test."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from musicrep.errors import MusicrepError
from musicrep.layers import OUT
from musicrep.metrics import fold_interval, get_metric, metric_interval
from musicrep.tasks import DEFAULT_METRICS, fold_roles
from musicrep.store import EmbeddingStore

Score = Callable[[np.ndarray, np.ndarray], float]

#: part of every probe result's cache key: a result written in an older format (without the
#: fields the report now shows) is probed again rather than shown incomplete. 3: intervals
#: named by method (Wilson for accuracy), per-item test predictions (``items``)
RESULT_FORMAT = 3
LEVEL, RESAMPLES = 0.95, 1000  # each test metric's interval (and its bootstrap, where it has one)
#: a result keeps its test items' scores (for the report's paired comparisons) only up to this
#: many numbers (targets and scores together): about 1 MB of JSON. Beyond it, a multiclass
#: result keeps each item's true and predicted class (enough for accuracy and the key score)
MAX_ITEM_VALUES = 100_000


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
                   ) -> tuple[dict[str, Any], dict[str, dict[str, float]], dict[str, list[float] | None],
                              dict[str, str], np.ndarray]:
    """The chosen settings, the metrics on valid and test, (``intervals``) each test metric's
    interval over the test items and its method's name, and the probe's test scores."""
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
    bounds, methods = {}, {}
    for m in metric_names if intervals else ():
        found = metric_interval(m, test[1], scores["test"], label_names, n=RESAMPLES, seed=seed, level=LEVEL)
        bounds[m] = None if found is None else [found[0], found[1]]
        if found is not None:
            methods[m] = found[2]
    return chosen, results, bounds, methods, np.asarray(scores["test"])


def item_record(ids: np.ndarray, targets: np.ndarray, scores: np.ndarray, kind: str,
                label_names: list[str]) -> dict[str, Any]:
    """The test items as the report's paired comparisons need them: their ids, and their targets
    and the probe's scores (rounded to 6 decimals) while they fit ``MAX_ITEM_VALUES``; a
    multiclass result always keeps each item's true and predicted class."""
    record: dict[str, Any] = {"ids": [str(i) for i in ids], "label_names": list(label_names)}
    if kind == "multiclass":
        record["target"] = targets.argmax(axis=1).tolist()
        record["predicted"] = scores.argmax(axis=1).tolist()
    if targets.size + scores.size <= MAX_ITEM_VALUES:
        record["targets"] = np.round(np.asarray(targets, dtype=float), 6).tolist()
        record["scores"] = np.round(np.asarray(scores, dtype=float), 6).tolist()
    return record


def probe_store(store_path: str | Path, probe: Probe, *, metrics: list[str] | None = None, seed: int = 0,
                probe_name: str = "probe", layer: str = OUT) -> dict[str, Any]:
    """Train ``probe`` on a finished store's embeddings of ``layer`` and report its metrics on
    valid and test.

    Stores with train/test splits (valid optional: carved from train when absent) are probed
    once. Stores whose splits are folds (k-fold tasks, no split named train) are probed once
    per fold: that fold is the test set, the next one the valid set, the rest train; the
    metrics are averaged over folds.

    Each test metric carries its interval (``interval``, its method named under ``method``; see
    ``musicrep.metrics``): over the test items, or for k-fold tasks over all items (accuracy)
    or the folds' scores, so a reader can tell a margin from noise. ``items`` keeps the test
    items' ids, targets and scores (see ``item_record``): the report compares models on them
    item by item.
    """
    with EmbeddingStore(store_path) as store:
        kind, label_names = store.kind, store.label_names
        if kind not in probe.kinds:
            raise MusicrepError(f"probe '{probe_name}' cannot serve {kind} tasks (it serves: "
                                f"{', '.join(probe.kinds)})")
        x_all, y_all, splits, skipped = store.embeddings(layer=layer), store.targets(), store.splits, store.skipped
        ids = store.ids
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
        chosen, results, bounds, methods, test_scores = _fit_and_score(
            **common, train=(x_all[train], y_all[train]), valid=(x_all[valid], y_all[valid]),
            test=(x_all[test], y_all[test]))
        counts = {"train": int(train.sum()), "valid": int(valid.sum()), "test": int(test.sum())}
        interval = {"level": LEVEL, "resamples": RESAMPLES, "over": "test items", "method": methods, "test": bounds}
        items = item_record(ids[test], y_all[test], test_scores, kind, label_names)
    elif "train" not in names and len(names) >= 3:
        per_fold, chosen, tested, fold_scores = [], [], [], []
        for i in range(len(names)):
            roles = fold_roles(names, i)
            train, valid, test = (np.isin(splits, roles[role]) for role in ("train", "valid", "test"))
            c, r, _, _, test_scores = _fit_and_score(**common, train=(x_all[train], y_all[train]), intervals=False,
                                                     valid=(x_all[valid], y_all[valid]),
                                                     test=(x_all[test], y_all[test]))
            per_fold.append(r)
            chosen.append(c)
            tested.append(np.flatnonzero(test))
            fold_scores.append(test_scores)
        results = {split: {m: float(np.mean([r[split][m] for r in per_fold])) for m in metric_names}
                   for split in ("valid", "test")}
        chosen = {"folds": chosen}
        counts = {"folds": len(names), "items": len(splits)}
        found = {m: fold_interval(m, [r["test"][m] for r in per_fold], len(splits), n=RESAMPLES, seed=seed,
                                  level=LEVEL) for m in metric_names}
        interval = {"level": LEVEL, "resamples": RESAMPLES, "over": "folds",
                    "method": {m: f[2] for m, f in found.items() if f is not None},
                    "test": {m: None if f is None else [f[0], f[1]] for m, f in found.items()}}
        order = np.concatenate(tested)  # every item is tested once, in its own fold
        items = item_record(ids[order], y_all[order], np.concatenate(fold_scores), kind, label_names)
    else:
        raise MusicrepError(f"{store_path}: a probe needs 'train' and 'test' items, or at least 3 folds; "
                            f"the store has splits: {', '.join(names) or 'none'}")
    return {"probe": probe_name, "kind": kind, "primary": metric_names[0], "chosen": chosen,
            "metrics": results, "interval": interval, "n": counts, "seed": seed, "skipped": skipped, "items": items}
