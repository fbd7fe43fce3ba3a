"""Probes find the structure in embeddings where there is some, for every task kind."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import musicrep
from musicrep.probing import Split, probe_store, standardise
from musicrep.store import StoreWriter, TaskView, TrackEmbedding


def clustered(kind: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings whose targets depend on them (linearly, plus noise)."""
    d, c = 12, 4
    x = rng.standard_normal((n, d)).astype(np.float32)
    w = rng.standard_normal((d, c))
    logits = x @ w
    if kind == "multiclass":
        y = np.eye(c)[logits.argmax(1)]
    elif kind == "multilabel":
        y = (logits > 0.5).astype(np.float32)
    else:
        y = (logits[:, :2] + 0.1 * rng.standard_normal((n, 2))).astype(np.float32)
    return x, y.astype(np.float32)


def write_store(view: Path, x: np.ndarray, y: np.ndarray, splits: list[str], kind: str, labels: list[str]) -> None:
    """A store of one window per item (``x``) and a view with targets ``y``, as the extractor leaves them."""
    writer = StoreWriter(view.with_suffix(".store"), {"m": 1})
    for i in range(len(x)):
        writer.add(TrackEmbedding(f"k{i}", x[i:i + 1], np.zeros(1, np.float32)))
    writer.finish([f"k{i}" for i in range(len(x))])
    TaskView([str(i) for i in range(len(x))], splits, [f"k{i}" for i in range(len(x))], y.astype(np.float32), kind,
             labels).write(view, view.with_suffix(".store"), {"m": 1})


@pytest.mark.parametrize("kind, metric, floor", [("multiclass", "accuracy", 0.7), ("multilabel", "roc_auc", 0.85),
                                                 ("regression", "r2", 0.7)])
@pytest.mark.parametrize("probe, config", [("linear", {}), ("knn", {"k_grid": [5, 15]}),
                                           ("mlp", {"hidden": [0, 32], "lr": [1e-2], "weight_decay": [0.0],
                                                    "epochs": 40, "patience": 8})])
def test_probes_beat_chance_through_a_store(tmp_path: Path, kind: str, metric: str, floor: float, probe: str,
                                            config: dict) -> None:
    rng = np.random.default_rng()
    x, y = clustered(kind, 400, rng)
    labels = [f"l{i}" for i in range(y.shape[1])]
    splits = ["test" if i % 4 == 0 else "train" for i in range(len(x))]  # no valid split: carved from train
    write_store(tmp_path / "s.h5", x, y, splits, kind, labels)
    result = probe_store(tmp_path / "s.h5", musicrep.get_component("probe", probe, **config), seed=0,
                         probe_name=probe)
    assert result["primary"] == metric and result["n"]["test"] == 100
    if probe == "knn":
        floor -= 0.2  # neighbours in 12-d follow a linear boundary less well than a linear model
    assert result["metrics"]["test"][metric] > floor, result
    for name, value in result["metrics"]["test"].items():  # each test metric with its bootstrap interval
        low, high = result["interval"]["test"][name]
        assert low - 0.02 <= value <= high + 0.02 and high - low < 0.5  # a percentile interval may miss the estimate by a hair
    assert result["interval"]["over"] == "test items" and result["skipped"] == []
    items = result["items"]  # the test items, for the report's paired comparisons
    assert items["ids"] == [str(i) for i in range(0, 400, 4)]
    np.testing.assert_allclose(items["targets"], y[::4].reshape(100, -1), atol=1e-6)
    assert np.shape(items["scores"]) == np.shape(items["targets"])


def test_shuffled_targets_give_chance_level() -> None:
    rng = np.random.default_rng()
    x, y = clustered("multiclass", 600, rng)
    y_shuffled = y[rng.permutation(len(y))]
    probe = musicrep.get_component("probe", "linear")
    xs = standardise(x[:400], x[400:500], x[500:])
    probe.fit(Split(xs[0], y_shuffled[:400]), Split(xs[1], y_shuffled[400:500]), "multiclass",
              lambda t, s: float(np.mean(t.argmax(1) == s.argmax(1))), 0)
    acc = np.mean(probe.predict(xs[2]).argmax(1) == y_shuffled[500:].argmax(1))
    assert acc < 0.5  # 4 classes: chance is about 0.25-0.4 given class imbalance


def test_standardise_uses_train_statistics() -> None:
    rng = np.random.default_rng()
    train = rng.normal(3.0, 2.0, (200, 5))
    test = rng.normal(3.0, 2.0, (50, 5)) + 10
    a, b = standardise(train, test)
    np.testing.assert_allclose(a.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(a.std(0), 1, atol=1e-4)
    assert b.mean() > 3  # shifted by the train statistics, not re-centred


def test_kfold_stores_are_probed_fold_by_fold(tmp_path: Path) -> None:
    rng = np.random.default_rng()
    x, y = clustered("multiclass", 300, rng)
    write_store(tmp_path / "k.h5", x, y, [f"fold{i % 5:02d}" for i in range(len(x))], "multiclass", list("abcd"))
    result = probe_store(tmp_path / "k.h5", musicrep.get_component("probe", "linear"), probe_name="linear")
    assert result["n"] == {"folds": 5, "items": 300} and len(result["chosen"]["folds"]) == 5
    assert result["metrics"]["test"]["accuracy"] > 0.7
    low, high = result["interval"]["test"]["accuracy"]  # over the five folds' scores
    assert result["interval"]["over"] == "folds" and low <= result["metrics"]["test"]["accuracy"] <= high
    assert result["interval"]["method"]["accuracy"] == "Wilson score"
    assert sorted(result["items"]["ids"], key=int) == [str(i) for i in range(300)]  # each item once, in its fold
    assert result["items"]["target"] == [int(np.argmax(y[int(i)])) for i in result["items"]["ids"]]
