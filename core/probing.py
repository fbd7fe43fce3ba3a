"""The probe stage: fit a shallow model on frozen embeddings, select on valid, score on test."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from musicrep.errors import MusicrepError
from musicrep.metrics import DEFAULT_METRICS, get_metric
from musicrep.store import EmbeddingStore

Score = Callable[[np.ndarray, np.ndarray], float]


@dataclass
class Split:
    x: np.ndarray  # [N, D] standardised embeddings
    y: np.ndarray  # [N, L] multi-hot targets or regression values


class Probe:
    """Base of probe plugins: ``fit`` selects hyper-parameters by ``score`` on ``valid``."""

    #: task kinds this probe can serve
    kinds: tuple[str, ...] = ("multiclass", "multilabel", "regression")

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


def probe_store(store_path: str | Path, probe: Probe, *, metrics: list[str] | None = None, seed: int = 0,
                probe_name: str = "probe") -> dict[str, Any]:
    """Train ``probe`` on a finished store's train split and report its metrics on valid and test."""
    with EmbeddingStore(store_path) as store:
        kind = store.kind
        if kind not in probe.kinds:
            raise MusicrepError(f"probe '{probe_name}' cannot serve {kind} tasks (it serves: "
                                f"{', '.join(probe.kinds)})")
        splits = set(store.splits.tolist())
        if "train" not in splits or "test" not in splits:
            raise MusicrepError(f"{store_path}: a probe needs 'train' and 'test' items; the store has "
                                f"{', '.join(sorted(splits)) or 'none'}")
        x_train, y_train = store.embeddings("train"), store.targets("train")
        x_test, y_test = store.embeddings("test"), store.targets("test")
        if "valid" in splits:
            x_valid, y_valid = store.embeddings("valid"), store.targets("valid")
        else:
            tr, va = split_valid(len(x_train), 0.15, seed)
            x_train, y_train, x_valid, y_valid = x_train[tr], y_train[tr], x_train[va], y_train[va]
        label_names = store.label_names
    metric_names = list(metrics or DEFAULT_METRICS[kind])
    primary = get_metric(metric_names[0])
    x_train, x_valid, x_test = standardise(x_train, x_valid, x_test)

    def score(targets: np.ndarray, scores: np.ndarray) -> float:
        value = primary(targets, scores, label_names)
        return -np.inf if np.isnan(value) else value

    chosen = probe.fit(Split(x_train, y_train), Split(x_valid, y_valid), kind, score, seed)
    results = {}
    for split_name, (x, y) in {"valid": (x_valid, y_valid), "test": (x_test, y_test)}.items():
        scores = probe.predict(x)
        results[split_name] = {m: get_metric(m)(y, scores, label_names) for m in metric_names}
    return {"probe": probe_name, "kind": kind, "primary": metric_names[0], "chosen": chosen,
            "metrics": results, "n": {"train": len(x_train), "valid": len(x_valid), "test": len(x_test)},
            "seed": seed}
