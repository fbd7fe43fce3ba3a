"""Reports: the table of tasks x models (the primary metric with its interval, the best marked
only where a paired test on the same test items says so), and report.md, a page a reader can
use without the run.

Models, tasks and probes appear in the order the run's ``pipeline.toml`` lists them (those
it does not list after, by name).

When a run probed intermediate layers (``layers``), every model's layer is a model of its own
in the table, named ``<model>/<layer>`` (``contrastive/block2``, ``contrastive/out``), and
``<model>/best`` gives, per task, the test score of the layer with the best valid score (see
``best_layers``); a run of the embedding alone names its models as before."""
from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from musicrep import atomic
from musicrep.layers import BEST, OUT
from musicrep.metrics import BOOTSTRAP, BOOTSTRAP_WILSON, METRICS, WILSON
from musicrep.paired import MCNEMAR, compare
from musicrep.plots import bar_charts, loss_curve, pca_scatter
from musicrep.rundir import RunDir
from musicrep.errors import MusicrepError
from musicrep.probing import LEVEL, MAX_ITEM_VALUES, RESAMPLES
from musicrep.store import StoreError
from musicrep.text import code_fence, for_markdown, for_terminal

#: table marks: what each says about the best model of a row
CLEAR, TIED, UNJUDGED = "*", "~", "?"
MARK_NOTES = {CLEAR: "best (clear)", TIED: "tied for best", UNJUDGED: "highest (not judged)"}
#: the level of the best model's comparisons, shared over them (Bonferroni): with k models the
#: best is compared with k - 1 others, each at ``ALPHA / (k - 1)``
ALPHA = 1 - LEVEL
#: how a comparison was judged (``judged``): a paired test on the items, or intervals overlapping
PAIRED, OVERLAP = "paired", "intervals"
#: metrics judged by the arg-max class alone, which a multiclass result's classes suffice for
ARGMAX_METRICS = frozenset({"accuracy", "key_weighted"})
#: what report.md says of its PCA figures (``musicrep.plots.pca_scatter``)
PCA_NOTE = ("Every split's track embeddings (train, valid and test, by marker fill) on the first two principal "
            "components of the train split, one colour per class. Each model's embeddings are standardised "
            "(per dimension, by the train split's mean and standard deviation, as the probes see them) before "
            "the PCA, so the axes of different models are on the same scale and comparable.")
FIELDS = ["model", "task", "probe", "split", "metric", "value", "low", "high", "interval_method", "mark", "primary",
          "seeds", "spread", "layer", "judged", "versus", "paired_test", "difference", "p_value", "difference_low",
          "difference_high"]
#: the name ``[run] seeds`` gives each seed's model: ``<model>.seed<N>``, ``/<layer>`` after it
SEED_NAME = re.compile(r"(.+)\.seed(\d+)(/[^/]+)?")


def load_results(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every finished probe result under ``run_dir/probes``: ``{model, task, probe, result}``,
    ``model`` naming the layer too (``<model>/<layer>``) when the run holds results of another
    layer than the embedding ("out").

    Results are written atomically, so a run in progress shows only whole results; a file
    damaged from outside is named on stderr and left out (``musicrep run`` probes it again).
    """
    found = []
    results = list(RunDir(Path(run_dir)).probe_results())
    layered = any(layer != OUT for _, _, layer, _, _ in results)
    for model, task, layer, probe, path in results:
        try:
            if path.stat().st_size > MAX_RESULT_BYTES:
                raise ValueError(f"over {MAX_RESULT_BYTES} bytes")
            result = checked_result(json.loads(path.read_bytes()))
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
            print(f"musicrep: warning: {for_terminal(path)}: unreadable probe result left out "
                  f"({type(exc).__name__}: {for_terminal(str(exc)[:200])}); `musicrep run` probes it again",
                  file=sys.stderr)
            continue
        found.append({"model": f"{model}/{layer}" if layered else model, "task": task, "probe": probe,
                      "result": result})
    return found + best_layers(found)


#: a pipeline.toml larger than this is not copied into report.md
MAX_SETTINGS_BYTES = 1 << 20
#: a probe result is a few MB at most (``MAX_ITEM_VALUES`` numbers): a larger file is not read
MAX_RESULT_BYTES = 64 << 20


#: the largest magnitude a score may have (an R² of -1e12 is already absurd): beyond it a
#: result is damaged, and its number would break the figures' axes
MAX_MAGNITUDE = 1e12


def _number_or_none(value: Any, where: str) -> None:
    """Raises ValueError unless ``value`` is None, NaN or a number within ``MAX_MAGNITUDE``."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} is not a number")
    if value == value and not -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:
        raise ValueError(f"{where} is out of range ({value:.3g})")


def checked_result(result: Any) -> dict[str, Any]:
    """A probe result read back, with every field the report uses of the type it expects;
    raises ValueError naming the first that is not (a result damaged or written by hand)."""
    if not isinstance(result, dict):
        raise ValueError("not a JSON object")
    metrics, primary = result.get("metrics"), result.get("primary")
    if not isinstance(metrics, dict) or not isinstance(metrics.get("test"), dict) or not isinstance(primary, str):
        raise ValueError("no 'metrics.test' or 'primary'")
    if primary not in metrics["test"]:
        raise ValueError(f"primary metric {primary!r} is not among the test metrics")
    for split, values in metrics.items():
        if not isinstance(split, str) or not isinstance(values, dict):
            raise ValueError("'metrics' is not a table of splits")
        for metric, value in values.items():
            _number_or_none(value, f"metrics.{split}.{metric}")
            if value is None:
                raise ValueError(f"metrics.{split}.{metric} is null")
    interval = result.get("interval", {})
    if not isinstance(interval, dict) or not isinstance(interval.get("test", {}), dict):
        raise ValueError("'interval' is not a table")
    for metric, bounds in interval.get("test", {}).items():
        if bounds is not None and not (isinstance(bounds, list) and len(bounds) == 2):
            raise ValueError(f"interval.test.{metric} is not [low, high]")
        for bound in bounds or []:
            _number_or_none(bound, f"interval.test.{metric}")
            if bound is None or bound != bound:
                raise ValueError(f"interval.test.{metric} holds null or NaN")
    if not isinstance(interval.get("method", {}), dict):
        raise ValueError("'interval.method' is not a table")
    if not isinstance(result.get("layer", ""), (str, type(None))):
        raise ValueError("'layer' is not a string")
    n = result.get("n", {})
    if not isinstance(n, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in n.values()):
        raise ValueError("'n' is not a table of counts")
    chosen = result.get("chosen", {})
    if not isinstance(chosen, dict) or ("folds" in chosen and not (
            isinstance(chosen["folds"], list)
            and all(isinstance(c, dict) and "folds" not in c for c in chosen["folds"]))):
        raise ValueError("'chosen' is not a table (per fold, of settings)")
    skipped = result.get("skipped", [])
    if not isinstance(skipped, list) or not all(isinstance(entry, dict) for entry in skipped):
        raise ValueError("'skipped' is not a list of tables")
    if not isinstance(result.get("items", {}), dict):
        raise ValueError("'items' is not a table")
    return result


def best_layers(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each model (each seed's apart) probed at two or more layers, per task and probe, the
    result of the layer with the highest valid score, as ``<model>/best`` with ``layer`` naming
    it: the layer is chosen without looking at test, as layer-wise probing studies choose one,
    so its test score is an honest figure for "this model, at its best depth for the task".
    Ties go to the first layer in name order; a task without a valid split (k-fold) gets none."""
    groups: dict[tuple[str, str, str], list[tuple[str, dict[str, Any]]]] = {}
    for f in found:
        model, _, layer = f["model"].rpartition("/")
        if model:
            groups.setdefault((model, f["task"], f["probe"]), []).append((layer, f["result"]))
    chosen = []
    for (model, task, probe), layers in sorted(groups.items()):
        scored = [(result["metrics"].get("valid", {}).get(result["primary"]), layer, result)
                  for layer, result in sorted(layers, key=lambda lr: lr[0])]
        if len(scored) < 2 or any(score is None or score != score for score, _, _ in scored):
            continue
        _, layer, result = max(scored, key=lambda s: s[0])
        chosen.append({"model": f"{model}/{BEST}", "task": task, "probe": probe, "result": {**result, "layer": layer}})
    return chosen


def _bounds(result: dict[str, Any], split: str, metric: str) -> tuple[float | None, float | None]:
    """The interval of one metric; (None, None) for results written before intervals existed."""
    interval = result.get("interval", {}).get(split, {}).get(metric) if split == "test" else None
    return (interval[0], interval[1]) if interval else (None, None)


def collect(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every finished probe result as flat rows (one per model, task, probe, split and metric),
    the primary test rows marked (see ``judge``)."""
    return flat_rows(load_results(run_dir))


def flat_rows(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``load_results``' results as the rows of results.csv, marked: one per result, and for
    models run over several seeds one more per model over its seeds (see ``over_seeds``)."""
    rows, results = [], {}
    for f in found:
        result = f["result"]
        results[(f["model"], f["task"], f["probe"])] = result
        methods = result.get("interval", {}).get("method", {})
        for split, values in result["metrics"].items():
            for metric, value in values.items():
                low, high = _bounds(result, split, metric)
                method = methods.get(metric) if low is not None else None
                rows.append({**dict.fromkeys(FIELDS), "model": f["model"], "task": f["task"], "probe": f["probe"],
                             "split": split, "metric": metric, "value": value, "low": low, "high": high,
                             "interval_method": method if isinstance(method, str) else None, "mark": "",
                             "primary": metric == result["primary"], "layer": result.get("layer")})
    rows += over_seeds(rows)
    for group in _comparisons(rows).values():
        arrays = {r["model"]: _item_arrays(results.get((r["model"], r["task"], r["probe"])), r["metric"])
                  for r in group}
        for model, symbol in judge(group, arrays).items():
            next(r for r in group if r["model"] == model)["mark"] = symbol
    return rows


ItemArrays = tuple[list[str], np.ndarray, np.ndarray, list[str]]


def _item_arrays(result: dict[str, Any] | None, metric: str) -> ItemArrays | None:
    """A result's test items as (ids, targets, scores, label names) for ``metric``, None where
    the result keeps none (older results, or over ``MAX_ITEM_VALUES``) or they do not add up."""
    items = (result or {}).get("items")
    if not isinstance(items, dict) or metric not in METRICS:
        return None
    ids, names = items.get("ids"), items.get("label_names", [])
    try:
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or not isinstance(names, list):
            return None
        if len(ids) * max(1, len(names)) > 40 * MAX_ITEM_VALUES:  # a damaged result asks for no huge array
            return None
        names = [str(name) for name in names]
        if "targets" in items and "scores" in items:
            targets = np.asarray(items["targets"], dtype=float)
            scores = np.asarray(items["scores"], dtype=float)
            if targets.ndim == 1:
                targets, scores = targets[:, None], scores[:, None]
        elif metric in ARGMAX_METRICS and "target" in items and "predicted" in items and names:
            classes = [np.asarray(items[k], dtype=np.int64) for k in ("target", "predicted")]
            if any(c.ndim != 1 or (c < 0).any() or (c >= len(names)).any() for c in classes):
                return None
            targets, scores = (np.zeros((len(c), len(names))) for c in classes)
            targets[np.arange(len(targets)), classes[0]] = 1
            scores[np.arange(len(scores)), classes[1]] = 1
        else:
            return None
    except (ValueError, TypeError, OverflowError):
        return None
    if targets.ndim != 2 or targets.shape != scores.shape or len(targets) != len(ids) or len(set(ids)) != len(ids):
        return None
    if not (np.isfinite(targets).all() and np.isfinite(scores).all()):
        return None
    return ids, targets, scores, names


def _aligned(a: ItemArrays, b: ItemArrays) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(targets, scores of a, scores of b) over the same items in the same order; None when the
    two results were not scored on the same items."""
    ids_a, targets, scores_a, _ = a
    ids_b, targets_b, scores_b, _ = b
    if set(ids_a) != set(ids_b) or targets.shape != targets_b.shape:
        return None
    if ids_a != ids_b:
        position = {item: i for i, item in enumerate(ids_b)}
        order = np.array([position[item] for item in ids_a])
        targets_b, scores_b = targets_b[order], scores_b[order]
    if not np.allclose(targets, targets_b, atol=1e-5, equal_nan=True):
        return None
    return targets, scores_a, scores_b


def seed_groups(models: set[str]) -> dict[str, list[str]]:
    """``{model: [its per-seed models]}`` for every model run over two or more seeds."""
    groups: dict[str, list[str]] = {}
    for name in sorted(models):
        if match := SEED_NAME.fullmatch(name):
            groups.setdefault(match[1] + (match[3] or ""), []).append(name)
    return {model: names for model, names in groups.items() if len(names) > 1}


def over_seeds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per model over its seeds, for every task, probe, split and metric: the mean, the
    seeds' standard deviation (``spread``) and a 95% interval of the mean whose half-width adds
    in quadrature the test items' sampling (the seeds' bootstrap half-widths, averaged) and the
    seeds' (Student's t over the seeds): the marks compare these intervals."""
    replicate = {name: model for model, names in seed_groups({r["model"] for r in rows}).items() for name in names}
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in rows:
        if r["model"] in replicate:
            groups.setdefault((replicate[r["model"]], r["task"], r["probe"], r["split"], r["metric"]), []).append(r)
    out = []
    for (model, task, probe, split, metric), group in groups.items():
        values = [r["value"] for r in group]
        n, mean = len(values), sum(values) / len(values)
        spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
        low = high = None
        if n > 1 and all(r["low"] is not None for r in group):
            from scipy.stats import t

            sampling = sum((r["high"] - r["low"]) / 2 for r in group) / n
            half = math.hypot(sampling, float(t.ppf(0.5 + LEVEL / 2, n - 1)) * spread / math.sqrt(n))
            low, high = mean - half, mean + half
        out.append({**dict.fromkeys(FIELDS), "model": model, "task": task, "probe": probe, "split": split,
                    "metric": metric, "value": mean, "low": low, "high": high, "mark": "",
                    "primary": group[0]["primary"], "seeds": n, "spread": spread})
    return out


def compared(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows the table compares: a model run over several seeds by its row over them, not
    by each seed's."""
    replicates = {name for names in seed_groups({r["model"] for r in rows}).values() for name in names}
    return [r for r in rows if r["model"] not in replicates]


def _comparisons(rows: list[dict[str, Any]], split: str = "test",
                 order: Order | None = None) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """The primary rows of ``split`` grouped by what is compared: (task, probe, metric), in the
    pipeline's order of tasks and probes (``order``), else by name."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in compared(rows):
        if r["primary"] and r["split"] == split:
            groups.setdefault((r["task"], r["probe"], r["metric"]), []).append(r)
    order = order or Order()
    return dict(sorted(groups.items(), key=lambda g: (order.task(g[0][0]), order.probe(g[0][1]), g[0][2])))


def judge(group: list[dict[str, Any]], arrays: dict[str, ItemArrays | None] | None = None) -> dict[str, str]:
    """Which models of one comparison to mark, and how it was judged (``judged`` on the best row;
    the paired test's figures on every other row, ``versus`` naming the best).

    Where every model's result keeps its test items (``arrays``), by paired tests of the best
    against each other model on the same items (``musicrep.paired``), each at ``ALPHA / (k - 1)``
    (Bonferroni): the best alone (``CLEAR``) when it is better than every other, else the best
    and every model it is not clearly better than (``TIED``). Otherwise (older results, models
    over seeds) by intervals: ``CLEAR`` when the best's interval lies clear of every other
    model's, else ``TIED`` with those that overlap it. ``UNJUDGED``: the highest value, without
    intervals or items."""
    finite = [r for r in group if r["value"] == r["value"]]
    if len(finite) < 2:
        return {}
    best = max(finite, key=lambda r: r["value"])
    others = [r for r in finite if r is not best]
    tested = _paired(best, others, arrays or {})
    if tested is not None:
        best["judged"] = PAIRED
        tied = [r for r in others if not tested[r["model"]]]
    elif any(r["low"] is None for r in finite):
        return {best["model"]: UNJUDGED}
    else:
        best["judged"] = OVERLAP
        tied = [r for r in others if r["low"] <= best["high"] and best["low"] <= r["high"]]
    return {r["model"]: TIED for r in [best, *tied]} if tied else {best["model"]: CLEAR}


def _paired(best: dict[str, Any], others: list[dict[str, Any]],
            arrays: dict[str, ItemArrays | None]) -> dict[str, bool] | None:
    """``{other model: whether the best is clearly better}`` by paired tests, the figures written
    on each other row; None unless every model kept the same test items."""
    mine = arrays.get(best["model"])
    if mine is None or best.get("seeds"):
        return None
    pairs = {}
    for r in others:
        theirs = arrays.get(r["model"])
        pair = None if theirs is None or r.get("seeds") else _aligned(mine, theirs)
        if pair is None:
            return None
        pairs[r["model"]] = pair
    alpha = ALPHA / len(others)
    clear = {}
    for r in others:
        targets, scores_best, scores_other = pairs[r["model"]]
        try:
            result = compare(best["metric"], targets, scores_best, scores_other, mine[3], alpha=alpha,
                             n=RESAMPLES, seed=0)
        except (ValueError, TypeError, IndexError, MusicrepError):  # items a metric cannot score (damaged)
            for other in others:
                other.update(dict.fromkeys(("versus", "paired_test", "difference", "p_value", "difference_low",
                                            "difference_high")))
            return None
        r.update(versus=best["model"], paired_test=result.method, difference=result.difference,
                 p_value=result.p, difference_low=result.low, difference_high=result.high)
        clear[r["model"]] = result.better
    return clear


def cell(row: dict[str, Any]) -> str:
    """``0.943 [0.921, 0.960] *``: the value, its interval, its mark; over seeds,
    ``0.943 ±0.012 (3 seeds) *``: the mean, the seeds' standard deviation, how many."""
    text = f"{row['value']:.3f}"
    if row.get("seeds"):
        n = row["seeds"]
        text += (f" ±{row['spread']:.3f} ({n} seeds)" if n > 1 else " (1 seed)")
    elif row["low"] is not None:
        text += f" [{row['low']:.3f}, {row['high']:.3f}]"
    if row.get("layer"):
        text += f" ({row['layer']})"
    return f"{text} {row['mark']}".rstrip()


def table(rows: list[dict[str, Any]], split: str = "test", order: Order | None = None,
          ) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per task (and probe), one column per model, in ``order``."""
    order = order or Order()
    groups = _comparisons(rows, split, order)
    models = sorted({r["model"] for group in groups.values() for r in group}, key=order.model)
    body = []
    for (task, probe, metric), group in groups.items():
        by_model = {r["model"]: r for r in group}
        body.append([task, probe, metric, *(cell(by_model[m]) if m in by_model else "-" for m in models)])
    return ["task", "probe", "metric", *models], body


INTERVAL_NOTES = {
    WILSON: "Wilson score interval (a proportion: never of zero width; 5 of 5 right gives [0.566, 1])",
    BOOTSTRAP_WILSON: f"percentile bootstrap ({RESAMPLES} resamples of the test items; of the folds for k-fold "
                      "tasks) widened to contain the Wilson interval of the same value over the same number of "
                      "items, so a small set is never reported as certain",
    BOOTSTRAP: f"percentile bootstrap ({RESAMPLES} resamples of the test items; of the folds for k-fold tasks)",
}


def legend(rows: list[dict[str, Any]]) -> list[str]:
    """What the table's numbers and marks mean, one line each, saying only what this table uses."""
    used = {r["mark"] for r in rows}
    judged = {r.get("judged") for r in rows if r["mark"] in (CLEAR, TIED)}
    lines = []
    if any(r.get("seeds") for r in rows):
        lines.append("±x (n seeds): the mean over n seeds (pre-training and probing repeated with each) and the "
                     f"seeds' standard deviation; the marks compare {LEVEL:.0%} intervals of the mean that add each "
                     "seed's interval half-width (averaged) and the seeds' Student's t half-width in quadrature "
                     "(bounds in results.csv; each seed's results under <model>.seed<N>)")
    bounded = [r for r in rows if r["low"] is not None and not r.get("seeds")]
    for method in sorted({r.get("interval_method") or "" for r in bounded}):
        metrics = ", ".join(sorted({r["metric"] for r in bounded if (r.get("interval_method") or "") == method}))
        note = INTERVAL_NOTES.get(method, f"percentile bootstrap (a result written before intervals were named)")
        lines.append(f"[low, high] of {metrics}: the {LEVEL:.0%} interval over the test items, {note}")
    if any(r.get("layer") for r in rows) or any(r["model"].endswith(f"/{BEST}") for r in rows):
        lines.append(f"<model>/{BEST}: per task, the layer with the best valid score (in parentheses; over seeds, "
                     "each seed's own), scored on test")
    if PAIRED in judged:
        lines.append(f"marks by paired tests: the best model is compared with each other model on the same test "
                     f"items (McNemar's exact test for accuracy, a paired bootstrap of the difference, {RESAMPLES} "
                     f"resamples, for other metrics), each at {ALPHA:.0%} divided by the number of comparisons "
                     "(Bonferroni); the differences with their p-values or intervals are in report.md and "
                     "results.json")
    if OVERLAP in judged:
        lines.append("marks by intervals (results without their test items: older results, means over seeds): "
                     "clear when the best's interval overlaps no other model's")
    if CLEAR in used:
        lines.append(f"{CLEAR}: the best model, clearly better than every other model")
    if TIED in used:
        lines.append(f"{TIED}: tied for best: the best model and every model not clearly worse than it")
    if UNJUDGED in used:
        lines.append(f"{UNJUDGED}: the highest value, from results without intervals or test items (not judged)")
    return lines


def comparison_lines(rows: list[dict[str, Any]], order: Order | None = None) -> list[str]:
    """report.md's account of each paired comparison: the best model against each other, the
    difference, its test, and the p-value or the interval of the difference."""
    order = order or Order()
    lines = []
    for (task, probe, metric), group in _comparisons(rows, "test", order).items():
        tested = sorted((r for r in group if r.get("versus")), key=lambda r: order.model(r["model"]))
        if not tested:
            continue
        alpha = ALPHA / len(tested)
        parts = []
        for r in tested:
            if r["paired_test"] == MCNEMAR:
                figure = f"p = {r['p_value']:.3g}"
            elif r["difference_low"] is not None:
                figure = (f"{1 - alpha:.1%} interval of the difference "
                          f"[{r['difference_low']:+.3f}, {r['difference_high']:+.3f}]")
            else:
                figure = "no interval (under two items)"
            verdict = "not clear" if r["mark"] == TIED else "clear"
            parts.append(f"vs {for_markdown(r['model'])} {r['difference']:+.3f} ({r['paired_test']}, {figure}: "
                         f"{verdict})")
        lines.append(f"- {for_markdown(task)} ({for_markdown(probe)}, {for_markdown(metric)}): best "
                     f"{for_markdown(tested[0]['versus'])}, each comparison at {alpha:.3g}: " + "; ".join(parts))
    return lines


@dataclass(frozen=True)
class Order:
    """The order the pipeline lists its models, tasks and probes in; names it does not list
    come after, by name."""

    models: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    probes: tuple[str, ...] = ()

    @staticmethod
    def _rank(listed: tuple[str, ...], name: str) -> tuple[int, str]:
        return (listed.index(name) if name in listed else len(listed), name)

    def model(self, name: str) -> tuple[Any, ...]:
        base, _, layer = name.partition("/")
        seed = SEED_NAME.fullmatch(base)
        return (*self._rank(self.models, seed[1] if seed else base), int(seed[2]) if seed else -1, layer)

    def task(self, name: str) -> tuple[int, str]:
        return self._rank(self.tasks, name)

    def probe(self, name: str) -> tuple[int, str]:
        return self._rank(self.probes, name)


def pipeline_order(run: RunDir) -> Order:
    """The order of ``run``'s ``pipeline.toml``; by name alone when it has none or it cannot be
    read (the order is a courtesy: a damaged settings file must not stop the report)."""
    import tomllib

    try:
        if not run.pipeline.is_file() or run.pipeline.stat().st_size > 1 << 20:
            return Order()
        data = tomllib.loads(run.pipeline.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return Order()

    def names(table: Any) -> tuple[str, ...]:
        return tuple(str(k) for k in table) if isinstance(table, dict) else ()

    probe = data.get("probe")
    probes = probe.get("probes", []) if isinstance(probe, dict) else []
    listed = tuple(str(p.get("type")) for p in probes if isinstance(p, dict)) if isinstance(probes, list) else ()
    return Order(names(data.get("models")), names(data.get("tasks")), listed)


def format_table(header: list[str], body: list[list[str]], markdown: bool = False) -> str:
    """A table for the terminal, or (``markdown``) for report.md; every cell is text that may
    come from input (names, labels), shown as the characters it holds (``musicrep.text``)."""
    shown = for_markdown if markdown else for_terminal
    header, body = [shown(c) for c in header], [[shown(c) for c in r] for r in body]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body)]
    def line(cells):
        padded = [str(c).ljust(w) for c, w in zip(cells, widths)]
        return ("| " + " | ".join(padded) + " |") if markdown else "  ".join(padded).rstrip()
    lines = [line(header), ("|" + "|".join("-" * (w + 2) for w in widths) + "|") if markdown
             else "  ".join("-" * w for w in widths)]
    return "\n".join([*lines, *(line(r) for r in body)])


def _settings(chosen: dict[str, Any]) -> str:
    """A probe's chosen hyper-parameters in one cell (its valid score has a column of its own);
    per fold for k-fold tasks."""
    if "folds" in chosen:
        return "per fold: " + "; ".join(_settings(c) for c in chosen["folds"])
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={str(v)[:80]}"
                     for k, v in chosen.items() if k != "valid_score") or "-"


def _sizes(n: dict[str, Any]) -> str:
    if "folds" in n:
        return f"{n['folds']} folds, {n.get('items', '?')} items"
    return " / ".join(str(n.get(s, "?")) for s in ("train", "valid", "test"))


def _task_section(task: str, found: list[dict[str, Any]], order: Order) -> list[str]:
    """One task: per model and probe its split sizes, valid and test scores, the chosen
    settings; then the files the embed stage skipped."""
    metrics = list(found[0]["result"]["metrics"]["test"])
    header = ["model", "probe", "train / valid / test", *(f"valid {m}" for m in metrics),
              *(f"test {m}" for m in metrics), f"test {metrics[0]} 95% interval", "chosen on valid"]
    body = []
    for f in sorted(found, key=lambda f: (order.model(f["model"]), order.probe(f["probe"]))):
        result = f["result"]
        low, high = _bounds(result, "test", result["primary"])
        model = f["model"] + (f" ({result['layer']})" if result.get("layer") else "")
        body.append([model, f["probe"], _sizes(result.get("n", {})),
                     *(_number(result["metrics"].get("valid", {}).get(m)) for m in metrics),
                     *(_number(result["metrics"]["test"].get(m)) for m in metrics),
                     "-" if low is None else f"[{low:.3f}, {high:.3f}]", _settings(result.get("chosen", {}))])
    lines = [f"### {for_markdown(task)}", "", format_table(header, body, markdown=True), ""]
    skipped = {str(s.get("path") or s.get("id")): str(s.get("reason", ""))
               for f in found for s in f["result"].get("skipped", [])}
    if any("skipped" in f["result"] for f in found):
        if skipped:
            shown = [f"- {for_markdown(p)}: {for_markdown(why)}" for p, why in sorted(skipped.items())[:50]]
            more = [f"- and {len(skipped) - 50} more (the store's `skipped` attribute lists all)"] if len(skipped) > 50 else []
            lines += [f"Skipped files ({len(skipped)}, bad audio):", "", *shown, *more, ""]
        else:
            lines += ["Skipped files: none.", ""]
    return lines


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def _loss_section(run: RunDir) -> list[str]:
    lines = []
    for model, log in run.training_logs():
        curve_name = f"loss-{model}.png"
        curve = loss_curve(log, run.plots / curve_name)
        if curve is None:
            continue
        steps, first, last = curve
        lines += [f"### {for_markdown(model)}", "", f"{steps} steps; loss {first:.4f} at the first step, {last:.4f} "
                  f"at the last ({for_markdown(log.relative_to(run.root))}).", "",
                  f"![{for_markdown(model)} pre-training loss](plots/{quote(curve_name)})", ""]
    return ["## Pre-training", "", *lines] if lines else []


@dataclass
class Report:
    """A run's results, rendered: the finished probe results, the rows behind the table, the
    table and its legend."""

    found: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    order: Order
    header: list[str]
    body: list[list[str]]
    key: list[str]

    @property
    def text(self) -> str:
        return "\n".join([format_table(self.header, self.body), *(for_terminal(line) for line in self.key)])


def render_report(run_dir: str | Path) -> Report:
    """The table of a run's finished probes; reads only (a read-only run directory is fine)."""
    run = RunDir(Path(run_dir))
    found = load_results(run.root)
    rows = flat_rows(found)
    order = pipeline_order(run)
    key = legend([r for r in compared(rows) if r["primary"] and r["split"] == "test"])
    return Report(found, rows, order, *table(rows, order=order), key)


def write_report_files(run_dir: str | Path, report: Report) -> None:
    """report.md, results.json, results.csv and plots/ in ``run_dir``; raises ``WriteError``."""
    run = RunDir(Path(run_dir))
    found, rows = report.found, report.rows
    atomic.write_json(run.results_json, rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(run.results_csv, buffer.getvalue())

    plots = run.plots
    with atomic.writing(plots):
        plots.mkdir(exist_ok=True)
    md = [f"# musicrep report: {for_markdown(run.root.name)}", "", "## Results", "",
          "The primary metric of each task on its test split.", "",
          format_table(report.header, report.body, markdown=True), "",
          *(f"- {for_markdown(line)}" for line in report.key), ""]
    comparisons = comparison_lines(rows, report.order)
    if comparisons:
        md += ["Paired comparisons of the best model with each other model on the same test items (the "
               "difference in the metric, best minus other):", "", *comparisons, ""]
    md += [f"![{for_markdown(p.stem)}](plots/{quote(p.name)})"
           for p in bar_charts(compared(rows), plots, MARK_NOTES, report.order)] + [""]
    md += ["## Tasks", "", "Per model and probe: the split sizes, the scores on valid (where the probe's "
           "settings were chosen) and test, and the chosen settings.", ""]
    for task in sorted({f["task"] for f in found}, key=report.order.task):
        md += _task_section(task, [f for f in found if f["task"] == task], report.order)
    md += _loss_section(run)
    pca = []
    stores = sorted(run.stores(), key=lambda s: (report.order.task(s[1]), report.order.model(s[0])))
    for model, task, store in stores:
        name = f"pca-{model}-{task}.png"
        try:
            pca_scatter(store, plots / name)
        except StoreError as exc:  # damaged from outside: the table stands without its picture
            print(f"musicrep: warning: no PCA plot: {for_terminal(exc)}", file=sys.stderr)
            continue
        pca.append(f"![{for_markdown(model)} / {for_markdown(task)}](plots/{quote(name)})")
    if pca:
        md += ["## Embeddings", "", PCA_NOTE, "", *pca, ""]
    settings = run.pipeline
    if settings.is_file() and settings.stat().st_size <= MAX_SETTINGS_BYTES:
        md += ["## Settings", "", "The pipeline this run was made with (`pipeline.toml`):", "",
               *code_fence(settings.read_text(errors="replace").rstrip(), "toml"), ""]
    atomic.write_text(run.report, "\n".join(md))


def write_report(run_dir: str | Path) -> str:
    """Write report.md, results.json, results.csv and plots/ into ``run_dir``; return the text table."""
    report = render_report(run_dir)
    write_report_files(run_dir, report)
    return report.text
