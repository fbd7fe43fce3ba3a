"""Report figures: a bar chart per task (models side by side) and a 2-D PCA of each store."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from musicrep import atomic
from musicrep.store import EmbeddingStore


def _save(fig: Any, path: Path) -> None:
    """Atomically: a report rendered while a run renders the same figure never leaves a torn PNG."""
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def bar_charts(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """One PNG per task and probe: the primary test metric of every model."""
    plt = _pyplot()
    written = []
    primary = [r for r in rows if r["primary"] and r["split"] == "test"]
    for task, probe in sorted({(r["task"], r["probe"]) for r in primary}):
        selected = sorted((r for r in primary if r["task"] == task and r["probe"] == probe), key=lambda r: r["model"])
        fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(selected), 3.2))
        ax.bar([r["model"] for r in selected], [r["value"] for r in selected], color="tab:blue")
        ax.set_title(f"{task} ({probe})")
        ax.set_ylabel(selected[0]["metric"])
        ax.tick_params(axis="x", rotation=30)
        fig.tight_layout()
        path = out_dir / f"{task}-{probe}.png"
        _save(fig, path)
        plt.close(fig)
        written.append(path)
    return written


def pca_scatter(store_path: Path, out_path: Path, max_points: int = 2000) -> Path:
    """The test split's track embeddings projected on their first two principal components."""
    plt = _pyplot()
    with EmbeddingStore(store_path) as store:
        x, y = store.embeddings("test"), store.targets("test")
        names, kind = store.label_names, store.kind
    if len(x) > max_points:
        keep = np.random.default_rng(0).choice(len(x), max_points, replace=False)
        x, y = x[keep], y[keep]
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    xy = x @ vt[:2].T if vt.shape[0] >= 2 else np.column_stack([x @ vt[:1].T, np.zeros(len(x))])
    fig, ax = plt.subplots(figsize=(4.5, 4))
    if kind == "regression":
        points = ax.scatter(xy[:, 0], xy[:, 1], c=y[:, 0], s=8, cmap="viridis")
        fig.colorbar(points, ax=ax, label=names[0] if names else "target")
    else:
        classes = y.argmax(axis=1)
        for c in np.unique(classes):
            ax.scatter(*xy[classes == c].T, s=8, label=names[c])
        if len(np.unique(classes)) <= 12:
            ax.legend(fontsize=6, markerscale=1.5)
    ax.set_title(f"{store_path.parent.name} / {store_path.stem}: PCA of test embeddings", fontsize=8)
    fig.tight_layout()
    _save(fig, out_path)
    plt.close(fig)
    return out_path
