"""Report figures: a bar chart per task (models side by side, with intervals), a 2-D PCA of
each store, and each pre-trained model's loss curve."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from musicrep import atomic
from musicrep.store import EmbeddingStore

#: with colours cycling over 10 and markers over 7, classes i and j share a style only when
#: i = j mod 70: every class of every built-in task (24 keys at most) looks different
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def _save(fig: Any, path: Path) -> None:
    """Atomically: a report rendered while a run renders the same figure never leaves a torn PNG."""
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def value_axis(lows: list[float], highs: list[float]) -> tuple[float, float]:
    """A y-range around the values and their intervals: 0.90 against 0.94 must look different,
    so the axis is not pinned to 0; it keeps room above the bars for their labels."""
    low, high = min(lows), max(highs)
    pad = max(high - low, 0.02) * 0.4
    bottom = low - pad
    if low >= 0 > bottom:  # a metric that cannot go negative gets no negative axis
        bottom = 0.0
    return bottom, high + 1.6 * pad


def bar_charts(rows: list[dict[str, Any]], out_dir: Path, mark_notes: dict[str, str] | None = None) -> list[Path]:
    """One PNG per task and probe: the primary test metric of every model, its interval as an
    error bar, and the value, interval and table mark written on each bar; the title explains
    the marks used by ``mark_notes`` (mark -> a few words)."""
    mark_notes = mark_notes or {}
    plt = _pyplot()
    written = []
    primary = [r for r in rows if r["primary"] and r["split"] == "test" and r["value"] == r["value"]]
    for task, probe in sorted({(r["task"], r["probe"]) for r in primary}):
        selected = sorted((r for r in primary if r["task"] == task and r["probe"] == probe), key=lambda r: r["model"])
        values = np.array([r["value"] for r in selected])
        lows = np.array([r["value"] if r["low"] is None else r["low"] for r in selected])
        highs = np.array([r["value"] if r["high"] is None else r["high"] for r in selected])
        fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(selected), 3.6))
        positions = np.arange(len(selected))
        ax.bar(positions, values, color="tab:blue", width=0.6, zorder=2)
        ax.errorbar(positions, values, yerr=[values - lows, highs - values], fmt="none", ecolor="black",
                    capsize=4, zorder=3)
        for x, r, top in zip(positions, selected, highs):
            label = f"{r['value']:.3f}" + ("" if r["low"] is None else f"\n±{(r['high'] - r['low']) / 2:.3f}")
            ax.annotate(label + (f" {r['mark']}" if r["mark"] else ""), (x, top), xytext=(0, 3),
                        textcoords="offset points", ha="center", va="bottom", fontsize=8)
        bottom, top = value_axis(list(lows), list(highs))
        ax.set_ylim(bottom, top)
        if highs.max() <= 1 < top:  # room for the labels above 1, but no tick a bounded metric cannot reach
            ax.set_yticks([t for t in ax.get_yticks() if bottom <= t <= 1])
        ax.set_xticks(positions, [r["model"] for r in selected], rotation=20, ha="right")
        ax.set_ylabel(f"test {selected[0]['metric']}")
        ax.grid(axis="y", alpha=0.3, zorder=0)
        notes = ["whiskers: 95% bootstrap intervals"] if any(r["low"] is not None for r in selected) else []
        notes += [f"{m} {mark_notes[m]}" for m in sorted({r["mark"] for r in selected} & set(mark_notes))]
        ax.set_title("\n".join([f"{task} ({probe})", "; ".join(notes)]).strip(), fontsize=9)
        fig.tight_layout()
        path = out_dir / f"{task}-{probe}.png"
        _save(fig, path)
        plt.close(fig)
        written.append(path)
    return written


def class_style(index: int) -> dict[str, Any]:
    """The colour and marker of class ``index``: distinct for any 70 classes in a row."""
    return {"color": f"C{index % 10}", "marker": MARKERS[index % len(MARKERS)]}


def pca_scatter(store_path: Path, out_path: Path, max_points: int = 2000) -> Path:
    """The test split's track embeddings projected on their first two principal components,
    the axes labelled with the share of variance each explains."""
    plt = _pyplot()
    with EmbeddingStore(store_path) as store:
        x, y = store.embeddings("test"), store.targets("test")
        names, kind = store.label_names, store.kind
    if len(x) > max_points:
        keep = np.random.default_rng(0).choice(len(x), max_points, replace=False)
        x, y = x[keep], y[keep]
    x = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    total = float((s ** 2).sum())
    share = [float(v ** 2) / total if total > 0 else 0.0 for v in s[:2]] + [0.0] * (2 - min(2, len(s)))
    xy = x @ vt[:2].T if vt.shape[0] >= 2 else np.column_stack([x @ vt[:1].T, np.zeros(len(x))])
    classes = None if kind == "regression" else y.argmax(axis=1)
    shown = [] if classes is None else np.unique(classes)
    legend_columns = 1 if len(shown) <= 16 else 2
    fig, ax = plt.subplots(figsize=(4.5 + 1.2 * legend_columns if len(shown) else 5.0, 4.2))
    if classes is None:
        points = ax.scatter(xy[:, 0], xy[:, 1], c=y[:, 0], s=10, cmap="viridis")
        fig.colorbar(points, ax=ax, label=names[0] if names else "target")
    else:
        for c in shown:
            ax.scatter(*xy[classes == c].T, s=18, label=names[c], alpha=0.8, linewidths=0, **class_style(int(c)))
        ax.legend(fontsize=7, markerscale=1.2, ncol=legend_columns, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  title="first label" if kind == "multilabel" else "class", title_fontsize=7, frameon=False)
    ax.set_xlabel(f"PC1 ({100 * share[0]:.1f}% of variance)")
    ax.set_ylabel(f"PC2 ({100 * share[1]:.1f}% of variance)")
    ax.set_title(f"{store_path.parent.name} / {store_path.stem}: PCA of {len(x)} test embeddings", fontsize=8)
    fig.tight_layout()
    _save(fig, out_path)
    plt.close(fig)
    return out_path


def loss_curve(log_path: Path, out_path: Path) -> tuple[int, float, float] | None:
    """The pre-training loss per step from ``metrics.jsonl`` (and its running mean, since one
    batch's loss is noisy); returns (steps, first loss, last loss), None for a log without loss."""
    points = []
    for line in log_path.read_text().splitlines():
        try:
            entry = json.loads(line)
            points.append((int(entry["step"]), float(entry["loss"])))
        except (ValueError, KeyError, TypeError):  # the torn line a killed run may leave
            continue
    if not points:
        return None
    steps, losses = (np.array(v) for v in zip(*sorted(points)))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    ax.plot(steps, losses, color="tab:blue", alpha=0.35, linewidth=0.8, label="per step")
    width = max(1, len(losses) // 25)
    if width > 1:
        smooth = np.convolve(losses, np.ones(width) / width, mode="valid")
        ax.plot(steps[width - 1:], smooth, color="tab:blue", linewidth=1.6, label=f"mean of {width} steps")
        ax.legend(fontsize=7, frameon=False)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(f"{log_path.parent.name}: pre-training loss", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, out_path)
    plt.close(fig)
    return int(steps[-1]), float(losses[0]), float(losses[-1])
