"""Report figures: a dot-and-interval chart per task (models side by side), a 2-D PCA of each
store, and each pre-trained model's loss curve.

Every figure is written twice: a PDF (vector, for a paper) and a PNG beside it at print
resolution (300 dpi, for report.md and screens). All are drawn under one matplotlib style,
``plots.mplstyle`` shipped beside this module; ``MUSICREP_PLOT_STYLE`` names a style file (or
a matplotlib style name) of the reader's own, applied after it. Text from input (model,
task and label names) is shown as the characters it holds (``musicrep.text.for_plot``).
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from musicrep import atomic
from musicrep.errors import MusicrepError
from musicrep.store import EmbeddingStore
from musicrep.text import for_plot

#: the style every figure is drawn under
STYLE = Path(__file__).with_name("plots.mplstyle")
#: the environment variable naming a reader's own style, applied after ``STYLE``
STYLE_VARIABLE = "MUSICREP_PLOT_STYLE"
#: the formats each figure is written in: the first is the one report.md shows
FORMATS = ("png", "pdf")
#: Kelly's colours of maximum contrast (1965; white and black left out): 20 colours that stay
#: apart for the 12 pitch classes and beyond; classes past 20 change marker as well
PALETTE = ("#0067A5", "#F38400", "#008856", "#BE0032", "#875692", "#882D17", "#E68FAC", "#848482",
           "#F3C300", "#A1CAF1", "#604E97", "#8DB600", "#F99379", "#2B3D26", "#B3446C", "#C2B280",
           "#DCD300", "#654522", "#E25822", "#F6A600")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
#: how each split is drawn in the PCA: test stands out (what is scored), train stays behind
SPLIT_STYLES = {
    "train": {"alpha": 0.4, "s": 12, "filled": False, "marker": "o"},
    "valid": {"alpha": 0.6, "s": 14, "filled": False, "marker": "s"},
    "test": {"alpha": 0.9, "s": 20, "filled": True, "marker": "o"},
}
#: metrics that lie in [0, 1]: their axis never runs past 1
BOUNDED = frozenset({"accuracy", "roc_auc", "pr_auc", "key_weighted"})


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def style() -> Iterator[None]:
    """musicrep's figure style, then the reader's (``MUSICREP_PLOT_STYLE``), for the figures
    drawn inside; a style that cannot be read is a one-line error naming it."""
    plt = _pyplot()
    styles: list[str | Path] = [STYLE]
    own = os.environ.get(STYLE_VARIABLE)
    if own:
        if own not in plt.style.available and not Path(own).is_file():
            raise MusicrepError(f"{STYLE_VARIABLE}={own}: neither a style file nor a matplotlib style "
                                f"(available: {', '.join(sorted(plt.style.available)[:8])}, ...)")
        styles.append(own)
    try:
        context = plt.style.context([str(s) for s in styles])
        context.__enter__()
    except (OSError, ValueError, KeyError) as exc:
        raise MusicrepError(f"{STYLE_VARIABLE}={own}: cannot use the style ({exc})") from None
    try:
        yield
    finally:
        context.__exit__(None, None, None)


def _save(fig: Any, path: Path) -> list[Path]:
    """``path`` (a PNG) and the same figure as a PDF beside it, each atomically: a report
    rendered while a run renders the same figure never leaves a torn file."""
    written = []
    for suffix in FORMATS:
        target = path.with_suffix(f".{suffix}")
        with atomic.atomic_path(target) as tmp:
            try:
                fig.savefig(tmp, format=suffix)
            except Exception as exc:
                # matplotlib's PDF writer, failing to clean up after a failed write (a full disk),
                # raises an AttributeError that hides the OSError: the OSError is what happened
                if not isinstance(exc, OSError) and isinstance(exc.__context__, OSError):
                    raise exc.__context__ from None
                raise
        written.append(target)
    return written


def value_axis(lows: list[float], highs: list[float], limit: tuple[float, float] | None = None) -> tuple[float, float]:
    """A range around the values and their intervals: 0.90 against 0.94 must look different,
    so it is not pinned to 0 (the chart draws dots, whose position carries the value, not bars
    whose length would be misread); it stays within ``limit`` (a metric's possible range)."""
    low, high = min(lows), max(highs)
    pad = max(high - low, 0.02) * 0.15
    bottom, top = low - pad, high + pad
    if limit is not None:
        bottom, top = max(bottom, limit[0]), min(top, limit[1])
    return bottom, top


def bar_charts(rows: list[dict[str, Any]], out_dir: Path, mark_notes: dict[str, str] | None = None,
               order: Any = None) -> list[Path]:
    """One figure per task and probe: the primary test metric of every model as a dot with its
    interval, and the value, interval and table mark written beside each; the subtitle names
    the interval and explains the marks used by ``mark_notes`` (mark -> a few words). Models,
    tasks and probes in ``order`` (``musicrep.report.Order``). Returns the PNGs."""
    mark_notes = mark_notes or {}
    written = []
    primary = [r for r in rows if r["primary"] and r["split"] == "test" and r["value"] == r["value"]]
    groups = sorted({(r["task"], r["probe"]) for r in primary},
                    key=lambda g: (order.task(g[0]), order.probe(g[1])) if order else g)
    with style():
        for task, probe in groups:
            selected = [r for r in primary if r["task"] == task and r["probe"] == probe]
            selected.sort(key=lambda r: order.model(r["model"]) if order else r["model"])
            path = out_dir / f"{task}-{probe}.png"
            _dot_chart(selected, task, probe, mark_notes, path)
            written.append(path)
    return written


def _dot_chart(selected: list[dict[str, Any]], task: str, probe: str, mark_notes: dict[str, str],
               path: Path) -> None:
    plt = _pyplot()
    values = np.array([r["value"] for r in selected])
    lows = np.array([r["value"] if r["low"] is None else r["low"] for r in selected])
    highs = np.array([r["value"] if r["high"] is None else r["high"] for r in selected])
    metric = selected[0]["metric"]
    fig, ax = plt.subplots(figsize=(5.0, 1.3 + 0.38 * len(selected)))
    positions = np.arange(len(selected))[::-1]  # the first model on top
    ax.errorbar(values, positions, xerr=[values - lows, highs - values], fmt="o", color=PALETTE[0],
                ecolor="black", elinewidth=1.0, markersize=6, zorder=3)
    for y, r in zip(positions, selected):
        label = f"{r['value']:.3f}"
        if r["low"] is not None and not r.get("seeds"):
            label += f" [{r['low']:.3f}, {r['high']:.3f}]"
        elif r.get("seeds"):
            label += f" ±{r['spread']:.3f} ({r['seeds']} seeds)"
        label += f" {r['mark']}" if r["mark"] else ""
        ax.annotate(label, (1.02, y), xycoords=("axes fraction", "data"), va="center", ha="left",
                    fontsize="small", annotation_clip=False)
    ax.set_yticks(positions, [for_plot(r["model"]) for r in selected])
    ax.set_ylim(-0.7, len(selected) - 0.3)
    ax.set_xlim(*value_axis(list(lows), list(highs), (0.0, 1.0) if metric in BOUNDED else None))
    ax.set_xlabel(f"test {for_plot(metric)}")
    ax.grid(axis="y", visible=False)
    notes = []
    if any(r["low"] is not None for r in selected):
        notes.append("whiskers: 95% intervals (see the report's legend)")
    notes += [f"{m} {mark_notes[m]}" for m in sorted({r["mark"] for r in selected} & set(mark_notes))]
    ax.set_title(f"{for_plot(task)} ({for_plot(probe)})", loc="left", pad=14 if notes else None)
    if notes:
        ax.annotate("; ".join(notes), (0, 1), xycoords="axes fraction", xytext=(0, 3), textcoords="offset points",
                    fontsize="x-small", ha="left", va="bottom", color="0.3")
    _save(fig, path)
    plt.close(fig)


def class_style(index: int) -> dict[str, Any]:
    """The colour and marker of class ``index``: a colour of its own for each of the first 20
    classes, and a (colour, marker) pair of its own for any 140 in a row."""
    return {"color": PALETTE[index % len(PALETTE)], "marker": MARKERS[(index // len(PALETTE)) % len(MARKERS)]}


def pca_scatter(store_path: Path, out_path: Path, max_points: int = 3000) -> Path:
    """Every split's track embeddings on the first two principal components of the train split,
    one colour per class and one look per split (test filled, train and valid hollow). The
    embeddings are standardised by the train split's mean and standard deviation first (as the
    probes see them), so two models' axes are on the same scale; each axis says its share of
    the variance."""
    with EmbeddingStore(store_path) as store:
        x, y, splits = store.embeddings(), store.targets(), store.splits
        names, kind = store.label_names, store.kind
    if len(x) > max_points:
        keep = np.sort(np.random.default_rng(0).choice(len(x), max_points, replace=False))
        x, y, splits = x[keep], y[keep], splits[keep]
    reference = splits == "train" if (splits == "train").any() else np.ones(len(x), bool)
    mean, std = x[reference].mean(axis=0), x[reference].std(axis=0)
    x = (x - mean) / np.where(std > 1e-8, std, 1.0)
    _, s, vt = np.linalg.svd(x[reference], full_matrices=False)
    total = float((s ** 2).sum())
    share = [float(v ** 2) / total if total > 0 else 0.0 for v in s[:2]] + [0.0] * (2 - min(2, len(s)))
    xy = x @ vt[:2].T if vt.shape[0] >= 2 else np.column_stack([x @ vt[:1].T, np.zeros(len(x))])
    with style():
        _pca_figure(xy, y, splits, names, kind, share, f"{store_path.parent.name} / {store_path.stem}", out_path)
    return out_path


def _pca_figure(xy: np.ndarray, y: np.ndarray, splits: np.ndarray, names: list[str], kind: str,
                share: list[float], title: str, out_path: Path) -> None:
    plt = _pyplot()
    classes = None if kind == "regression" else y.argmax(axis=1)
    shown = [] if classes is None else list(np.unique(classes))
    columns = 1 if len(shown) <= 14 else 2
    fig, ax = plt.subplots(figsize=(5.0 + 1.1 * columns, 4.2))
    present = [s for s in SPLIT_STYLES if (splits == s).any()] + sorted(set(splits.tolist()) - set(SPLIT_STYLES))
    for split in present:
        look = SPLIT_STYLES.get(split, SPLIT_STYLES["train"])
        here = splits == split
        if classes is None:
            points = ax.scatter(*xy[here].T, c=y[here, 0], s=look["s"], alpha=look["alpha"], cmap="viridis",
                                vmin=float(y[:, 0].min()), vmax=float(y[:, 0].max()),
                                marker=MARKERS[present.index(split) % len(MARKERS)], linewidths=0)
            continue
        for c in shown:
            mine = here & (classes == c)
            if not mine.any():
                continue
            s = class_style(int(c))
            colours = {"facecolors": s["color"], "edgecolors": "none"} if look["filled"] else \
                {"facecolors": "none", "edgecolors": s["color"]}
            marker = look["marker"] if len(shown) <= len(PALETTE) else s["marker"]  # past 20: the class's
            ax.scatter(*xy[mine].T, s=look["s"], alpha=look["alpha"], marker=marker, linewidths=0.8, **colours)
    if classes is None:
        fig.colorbar(points, ax=ax, label=for_plot(names[0] if names else "target"))
        handles = [ax.scatter([], [], marker=MARKERS[i % len(MARKERS)], color="0.4", label=split)
                   for i, split in enumerate(present)]
        ax.legend(handles=handles, title="split", loc="best")
    else:
        class_handles = [ax.scatter([], [], color=class_style(int(c))["color"], marker=class_style(int(c))["marker"],
                                    s=24, label=for_plot(names[c] if c < len(names) else c)) for c in shown]
        split_handles = [ax.scatter([], [], s=24, label=f"{split} ({int((splits == split).sum())})",
                                    marker=SPLIT_STYLES.get(split, SPLIT_STYLES["train"])["marker"]
                                    if len(shown) <= len(PALETTE) else "o",
                                    **({"facecolors": "0.3", "edgecolors": "none"}
                                       if SPLIT_STYLES.get(split, SPLIT_STYLES["train"])["filled"]
                                       else {"facecolors": "none", "edgecolors": "0.3"}))
                         for split in present]
        first = ax.legend(handles=class_handles, ncol=columns, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                          title="first label" if kind == "multilabel" else "class", handletextpad=0.2,
                          columnspacing=0.6)
        ax.add_artist(first)
        ax.legend(handles=split_handles, loc="lower left", bbox_to_anchor=(1.01, 0.0), title="split",
                  handletextpad=0.2)
    ax.set_xlabel(f"PC1 ({100 * share[0]:.1f}% of train variance)")
    ax.set_ylabel(f"PC2 ({100 * share[1]:.1f}% of train variance)")
    ax.set_title(for_plot(title), loc="left")
    ax.set_aspect("equal", adjustable="datalim")
    _save(fig, out_path)
    plt.close(fig)


def loss_curve(log_path: Path, out_path: Path) -> tuple[int, float, float] | None:
    """The pre-training loss per step from ``metrics.jsonl`` (and its running mean, since one
    batch's loss is noisy); returns (steps, first loss, last loss), None for a log without loss."""
    points = []
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
            step, loss = int(entry["step"]), float(entry["loss"])
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError):  # a torn line a killed run left
            continue
        if 0 <= step < 2**53 and np.isfinite(loss):  # anything else is damage, not a step
            points.append((step, loss))
    if not points:
        return None
    steps, losses = (np.array(v) for v in zip(*sorted(points)))
    plt = _pyplot()
    with style():
        fig, ax = plt.subplots(figsize=(5.0, 3.0))
        ax.plot(steps, losses, color=PALETTE[0], alpha=0.35, linewidth=0.8, label="per step")
        width = max(1, len(losses) // 25)
        if width > 1:
            smooth = np.convolve(losses, np.ones(width) / width, mode="valid")
            ax.plot(steps[width - 1:], smooth, color=PALETTE[0], linewidth=1.6, label=f"mean of {width} steps")
            ax.legend()
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.set_title(f"{for_plot(log_path.parent.name)}: pre-training loss", loc="left")
        _save(fig, out_path)
        plt.close(fig)
    return int(steps[-1]), float(losses[0]), float(losses[-1])
