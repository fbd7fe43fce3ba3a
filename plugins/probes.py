"""Built-in probes: linear (scikit-learn), k-nearest neighbours."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from musicrep.config import invalid
from musicrep.hookspecs import Factories, hookimpl
from musicrep.probing import Probe, Score, Split


def _grid_search(candidates: list[dict[str, Any]], build, train: Split, valid: Split, score: Score):
    """Fit one model per candidate; keep the best on valid (the first on ties)."""
    best, best_value, best_params = None, -np.inf, candidates[0]
    for params in candidates:
        model = build(**params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter on tiny grids
            model.fit(train.x, train.y)
        value = score(valid.y, model.scores(valid.x))
        if best is None or value > best_value:
            best, best_value, best_params = model, value, params
    return best, {**best_params, "valid_score": float(best_value)}


class _SkModel:
    """Wraps a scikit-learn estimator so every kind yields scores shaped like its targets."""

    def __init__(self, kind: str, estimator: Any) -> None:
        self.kind, self.estimator = kind, estimator

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        if self.kind == "multiclass":
            self.n_classes = y.shape[1]
            self.estimator.fit(x, y.argmax(axis=1))
        else:
            self.estimator.fit(x, y)

    def scores(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "regression":
            out = self.estimator.predict(x)
            return out.reshape(len(x), -1)
        if self.kind == "multiclass":
            proba = self.estimator.predict_proba(x)
            full = np.zeros((len(x), self.n_classes), dtype=np.float64)
            full[:, self.estimator.classes_] = proba  # classes absent from train score 0
            return full
        proba = self.estimator.predict_proba(x)
        if not isinstance(proba, list):
            return proba
        # one probability table per label (k-NN on multi-hot targets): take P(label present)
        columns = []
        for p, classes in zip(proba, self.estimator.classes_):
            present = np.flatnonzero(np.asarray(classes) == 1)
            columns.append(p[:, present[0]] if len(present) else np.zeros(len(x)))
        return np.column_stack(columns)


class LinearProbe(Probe):
    """Logistic regression (ridge for regression) with the regularisation chosen on valid."""

    @dataclass
    class Config:
        c_grid: list[float] = field(default_factory=lambda: [1e-3, 1e-2, 1e-1, 1.0, 10.0])
        max_iter: int = 1000

        def __post_init__(self) -> None:
            if not self.c_grid or any(c <= 0 for c in self.c_grid):
                raise invalid("c_grid", f"needs positive values, got {self.c_grid}")
            if self.max_iter <= 0:
                raise invalid("max_iter", f"must be positive, got {self.max_iter}")

    def __init__(self, config: Config) -> None:
        self.config = config

    def fit(self, train: Split, valid: Split, kind: str, score: Score, seed: int) -> dict[str, Any]:
        from sklearn.linear_model import LogisticRegression, Ridge
        from sklearn.multiclass import OneVsRestClassifier

        def build(c: float) -> _SkModel:
            if kind == "regression":
                return _SkModel(kind, Ridge(alpha=1.0 / c, random_state=seed))
            logistic = LogisticRegression(C=c, max_iter=self.config.max_iter, random_state=seed)
            return _SkModel(kind, OneVsRestClassifier(logistic) if kind == "multilabel" else logistic)

        self.model, chosen = _grid_search([{"c": c} for c in self.config.c_grid], build, train, valid, score)
        return chosen

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.scores(x)


class KNNProbe(Probe):
    """k-nearest neighbours (cosine), k chosen on valid: a probe with no training at all."""

    @dataclass
    class Config:
        k_grid: list[int] = field(default_factory=lambda: [1, 5, 10, 20])

        def __post_init__(self) -> None:
            if not self.k_grid or any(k <= 0 for k in self.k_grid):
                raise invalid("k_grid", f"needs positive values, got {self.k_grid}")

    def __init__(self, config: Config) -> None:
        self.config = config

    def fit(self, train: Split, valid: Split, kind: str, score: Score, seed: int) -> dict[str, Any]:
        from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

        def build(k: int) -> _SkModel:
            k = min(k, len(train.x))
            if kind == "regression":
                return _SkModel(kind, KNeighborsRegressor(n_neighbors=k, metric="cosine"))
            return _SkModel(kind, KNeighborsClassifier(n_neighbors=k, metric="cosine"))

        self.model, chosen = _grid_search([{"k": k} for k in self.config.k_grid], build, train, valid, score)
        return chosen

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.scores(x)


@hookimpl
def musicrep_probes() -> Factories:
    return {"linear": LinearProbe, "knn": KNNProbe}
