"""Built-in probes: linear (scikit-learn), k-nearest neighbours."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from musicrep.config import interval, items, non_negative, positive
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

    default = True  # the paper's protocol

    @dataclass
    class Config:
        c_grid: list[float] = items(positive(), [1e-3, 1e-2, 1e-1, 1.0, 10.0])
        max_iter: int = positive(1000)

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
        k_grid: list[int] = items(positive(), [1, 5, 10, 20])

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


class _MLP:
    """One MLP probe configuration, trained with Adam, warm-up then cosine decay, early stopping."""

    def __init__(self, kind: str, hidden: int, lr: float, weight_decay: float, dropout: float, epochs: int,
                 patience: int, batch_size: int, seed: int, score: Score) -> None:
        self.kind, self.hidden, self.lr, self.weight_decay, self.dropout = kind, hidden, lr, weight_decay, dropout
        self.epochs, self.patience, self.batch_size, self.seed, self.score = epochs, patience, batch_size, seed, score

    def _loss(self, logits, y):
        import torch.nn.functional as F

        if self.kind == "multiclass":
            return F.cross_entropy(logits, y.argmax(dim=1))
        if self.kind == "multilabel":
            return F.binary_cross_entropy_with_logits(logits, y)
        return F.mse_loss(logits, y)

    def fit(self, train: Split, valid: Split) -> float:
        import math

        import torch
        from torch import nn

        generator = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        d, out = train.x.shape[1], train.y.shape[1]
        # as MULE's probes: dropout after the hidden layer only, none on the input
        self.net = nn.Sequential(nn.Linear(d, self.hidden), nn.ReLU(), nn.Dropout(self.dropout),
                                 nn.Linear(self.hidden, out)) if self.hidden else nn.Linear(d, out)
        x, y = torch.from_numpy(train.x), torch.from_numpy(train.y).float()
        # regression targets are learnt standardised (then mapped back), so one lr grid fits all scales
        self.y_mean = y.mean(dim=0) if self.kind == "regression" else torch.zeros(())
        self.y_std = y.std(dim=0).clamp(min=1e-8) if self.kind == "regression" and len(y) > 1 else torch.ones(())
        y = (y - self.y_mean) / self.y_std
        steps_per_epoch = max(1, math.ceil(len(x) / self.batch_size))
        total, warmup = self.epochs * steps_per_epoch, steps_per_epoch
        optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (
            1 + math.cos(math.pi * min(1.0, s / total))))
        best, best_state, waited = -np.inf, None, 0
        for _ in range(self.epochs):
            self.net.train()
            for idx in torch.randperm(len(x), generator=generator).split(self.batch_size):
                optimizer.zero_grad()
                self._loss(self.net(x[idx]), y[idx]).backward()
                optimizer.step()
                schedule.step()
            value = self.score(valid.y, self.scores(valid.x))
            if value > best:
                best, waited = value, 0
                best_state = {k: v.clone() for k, v in self.net.state_dict().items()}
            else:
                waited += 1
                if waited >= self.patience:
                    break
        self.net.load_state_dict(best_state)
        return best

    def scores(self, x: np.ndarray) -> np.ndarray:
        import torch

        self.net.eval()
        with torch.no_grad():
            logits = self.net(torch.from_numpy(x))
        if self.kind == "multiclass":
            return torch.softmax(logits, dim=1).numpy()
        if self.kind == "multilabel":
            return torch.sigmoid(logits).numpy()
        return (logits * self.y_std + self.y_mean).numpy()


class MLPProbe(Probe):
    """PyTorch MLP (none or one hidden layer), grid-searched on valid with early stopping (MULE's protocol)."""

    @dataclass
    class Config:
        # The default grid covers every configuration MULE's probes chose (docs/probes.md), plus
        # lr 1e-3 for small datasets where their 1e-4 / 5e-5 would stop before converging.
        hidden: list[int] = items(non_negative(), [0, 512])  # 0: no hidden layer (linear)
        lr: list[float] = items(positive(), [1e-3, 1e-4, 5e-5])
        weight_decay: list[float] = items(non_negative(), [0.0, 2e-6])
        dropout: list[float] = items(interval(0, 1, high_open=True), [0.0, 0.5])
        epochs: int = positive(100)
        patience: int = positive(10)
        batch_size: int = positive(64)

    def __init__(self, config: Config) -> None:
        self.config = config

    def fit(self, train: Split, valid: Split, kind: str, score: Score, seed: int) -> dict[str, Any]:
        c = self.config
        grid = [{"hidden": h, "lr": lr, "weight_decay": wd, "dropout": dr}
                for h in c.hidden for lr in c.lr for wd in c.weight_decay for dr in c.dropout]
        best_value = -np.inf
        for params in grid:
            model = _MLP(kind, epochs=c.epochs, patience=c.patience, batch_size=c.batch_size, seed=seed,
                         score=score, **params)
            value = model.fit(train, valid)
            if value > best_value:
                best_value, self.model, chosen = value, model, params
        return {**chosen, "valid_score": float(best_value)}

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.scores(x)


@hookimpl
def musicrep_probes() -> Factories:
    return {"linear": LinearProbe, "mlp": MLPProbe, "knn": KNNProbe}
