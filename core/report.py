"""Reports: the table of tasks x models (the primary metric with its interval, the best marked
only where the interval says so), and report.md, a page a reader can use without the run.

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

from musicrep import atomic
from musicrep.layers import BEST, OUT
from musicrep.plots import bar_charts, loss_curve, pca_scatter
from musicrep.rundir import RunDir
from musicrep.probing import LEVEL, RESAMPLES
from musicrep.store import StoreError

#: table marks: what each says about the best model of a row
CLEAR, TIED, UNJUDGED = "*", "~", "?"
MARK_NOTES = {CLEAR: "best (interval clear)", TIED: "tied for best", UNJUDGED: "highest (no intervals)"}
FIELDS = ["model", "task", "probe", "split", "metric", "value", "low", "high", "mark", "primary", "seeds", "spread",
          "layer"]
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
            result = json.loads(path.read_text())
            result["metrics"]["test"], result["primary"]  # noqa: B018 - what every result must hold
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"musicrep: warning: {path}: unreadable probe result left out ({type(exc).__name__}); "
                  f"`musicrep run` probes it again", file=sys.stderr)
            continue
        found.append({"model": f"{model}/{layer}" if layered else model, "task": task, "probe": probe,
                      "result": result})
    return found + best_layers(found)


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
    the primary test rows marked (see ``mark``)."""
    return flat_rows(load_results(run_dir))


def flat_rows(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``load_results``' results as the rows of results.csv, marked: one per result, and for
    models run over several seeds one more per model over its seeds (see ``over_seeds``)."""
    rows = []
    for f in found:
        result = f["result"]
        for split, values in result["metrics"].items():
            for metric, value in values.items():
                low, high = _bounds(result, split, metric)
                rows.append({"model": f["model"], "task": f["task"], "probe": f["probe"], "split": split,
                             "metric": metric, "value": value, "low": low, "high": high, "mark": "",
                             "primary": metric == result["primary"], "seeds": None, "spread": None,
                             "layer": result.get("layer")})
    rows += over_seeds(rows)
    for group in _comparisons(rows).values():
        for model, symbol in mark(group).items():
            next(r for r in group if r["model"] == model)["mark"] = symbol
    return rows


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
        out.append({"model": model, "task": task, "probe": probe, "split": split, "metric": metric, "value": mean,
                    "low": low, "high": high, "mark": "", "primary": group[0]["primary"], "seeds": n,
                    "spread": spread, "layer": None})
    return out


def compared(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows the table compares: a model run over several seeds by its row over them, not
    by each seed's."""
    replicates = {name for names in seed_groups({r["model"] for r in rows}).values() for name in names}
    return [r for r in rows if r["model"] not in replicates]


def _comparisons(rows: list[dict[str, Any]], split: str = "test") -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """The primary rows of ``split`` grouped by what is compared: (task, probe, metric)."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in compared(rows):
        if r["primary"] and r["split"] == split:
            groups.setdefault((r["task"], r["probe"], r["metric"]), []).append(r)
    return dict(sorted(groups.items()))


def mark(group: list[dict[str, Any]]) -> dict[str, str]:
    """Which models of one comparison to mark: the best alone (``CLEAR``) when its interval lies
    clear of every other model's; else the best and every model whose interval overlaps its
    (``TIED``); the best by value alone (``UNJUDGED``) when an interval is missing."""
    finite = [r for r in group if r["value"] == r["value"]]
    if len(finite) < 2:
        return {}
    best = max(finite, key=lambda r: r["value"])
    others = [r for r in finite if r is not best]
    if any(r["low"] is None for r in finite):
        return {best["model"]: UNJUDGED}
    tied = [r for r in others if r["low"] <= best["high"] and best["low"] <= r["high"]]
    return {r["model"]: TIED for r in [best, *tied]} if tied else {best["model"]: CLEAR}


def cell(row: dict[str, Any]) -> str:
    """``0.943 ±0.017 *``: the value, half its interval's width, its mark; over seeds,
    ``0.943 ±0.012 (3 seeds) *``: the mean, the seeds' standard deviation, how many."""
    text = f"{row['value']:.3f}"
    if row.get("seeds"):
        n = row["seeds"]
        text += (f" ±{row['spread']:.3f} ({n} seeds)" if n > 1 else " (1 seed)")
    elif row["low"] is not None:
        text += f" ±{(row['high'] - row['low']) / 2:.3f}"
    if row.get("layer"):
        text += f" [{row['layer']}]"
    return f"{text} {row['mark']}".rstrip()


def table(rows: list[dict[str, Any]], split: str = "test") -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per task (and probe), one column per model."""
    groups = _comparisons(rows, split)
    models = sorted({r["model"] for group in groups.values() for r in group})
    body = []
    for (task, probe, metric), group in groups.items():
        by_model = {r["model"]: r for r in group}
        body.append([task, probe, metric, *(cell(by_model[m]) if m in by_model else "-" for m in models)])
    return ["task", "probe", "metric", *models], body


def legend(rows: list[dict[str, Any]]) -> list[str]:
    """What the table's numbers and marks mean, one line each, saying only what this table uses."""
    used = {r["mark"] for r in rows}
    lines = []
    if any(r.get("seeds") for r in rows):
        lines.append("±x (n seeds): the mean over n seeds (pre-training and probing repeated with each) and the "
                     f"seeds' standard deviation; the marks compare {LEVEL:.0%} intervals of the mean that add each "
                     "seed's bootstrap half-width (averaged) and the seeds' Student's t half-width in quadrature "
                     "(bounds in results.csv; each seed's results under <model>.seed<N>)")
    if any(r["low"] is not None and not r.get("seeds") for r in rows):
        lines.append(f"±: half the width of the {LEVEL:.0%} bootstrap interval ({RESAMPLES} resamples of the test "
                     "items; of the folds for k-fold tasks); the bounds are in results.csv")
    if any(r.get("layer") for r in rows) or any(r["model"].endswith(f"/{BEST}") for r in rows):
        lines.append(f"<model>/{BEST}: per task, the layer with the best valid score (in brackets; over seeds, each "
                     "seed's own), scored on test")
    if CLEAR in used:
        lines.append(f"{CLEAR}: the best model, its interval clear of every other model's")
    if TIED in used:
        lines.append(f"{TIED}: tied for best: the best model and every model whose interval overlaps the best one's")
    if UNJUDGED in used:
        lines.append(f"{UNJUDGED}: the highest value, from results without intervals (not judged)")
    return lines


def _escaped(text: str) -> str:
    """For markdown, where a bare * or ~ is markup."""
    return text.replace("*", "\\*").replace("~", "\\~")


def format_table(header: list[str], body: list[list[str]], markdown: bool = False) -> str:
    if markdown:
        body = [[_escaped(c) for c in r] for r in body]
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
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in chosen.items() if k != "valid_score") or "-"


def _sizes(n: dict[str, Any]) -> str:
    if "folds" in n:
        return f"{n['folds']} folds, {n['items']} items"
    return " / ".join(str(n.get(s, "?")) for s in ("train", "valid", "test"))


def _task_section(task: str, found: list[dict[str, Any]]) -> list[str]:
    """One task: per model and probe its split sizes, valid and test scores, the chosen
    settings; then the files the embed stage skipped."""
    metrics = list(found[0]["result"]["metrics"]["test"])
    header = ["model", "probe", "train / valid / test", *(f"valid {m}" for m in metrics),
              *(f"test {m}" for m in metrics), f"test {metrics[0]} 95% interval", "chosen on valid"]
    body = []
    for f in found:
        result = f["result"]
        low, high = _bounds(result, "test", result["primary"])
        model = f["model"] + (f" ({result['layer']})" if result.get("layer") else "")
        body.append([model, f["probe"], _sizes(result.get("n", {})),
                     *(_number(result["metrics"].get("valid", {}).get(m)) for m in metrics),
                     *(_number(result["metrics"]["test"].get(m)) for m in metrics),
                     "-" if low is None else f"[{low:.3f}, {high:.3f}]", _settings(result.get("chosen", {}))])
    lines = [f"### {task}", "", format_table(header, body, markdown=True), ""]
    skipped = {s.get("path") or s.get("id"): s.get("reason", "") for f in found for s in f["result"].get("skipped", [])}
    if any("skipped" in f["result"] for f in found):
        if skipped:
            shown = [f"- `{p}`: {why}" for p, why in sorted(skipped.items())[:50]]
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
        curve = loss_curve(log, run.plots / f"loss-{model}.png")
        if curve is None:
            continue
        steps, first, last = curve
        lines += [f"### {model}", "", f"{steps} steps; loss {first:.4f} at the first step, {last:.4f} at the last "
                  f"(`{log.relative_to(run.root)}`).", "", f"![{model} pre-training loss](plots/loss-{model}.png)", ""]
    return ["## Pre-training", "", *lines] if lines else []


@dataclass
class Report:
    """A run's results, rendered: the finished probe results, the rows behind the table, the
    table and its legend."""

    found: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    header: list[str]
    body: list[list[str]]
    key: list[str]

    @property
    def text(self) -> str:
        return "\n".join([format_table(self.header, self.body), *self.key])


def render_report(run_dir: str | Path) -> Report:
    """The table of a run's finished probes; reads only (a read-only run directory is fine)."""
    found = load_results(RunDir(Path(run_dir)).root)
    rows = flat_rows(found)
    key = legend([r for r in compared(rows) if r["primary"] and r["split"] == "test"])
    return Report(found, rows, *table(rows), key)


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
    md = [f"# musicrep report: {run.root.name}", "", "## Results", "",
          "The primary metric of each task on its test split.", "",
          format_table(report.header, report.body, markdown=True), "",
          *(f"- {_escaped(line)}" for line in report.key), ""]
    md += [f"![{p.stem}](plots/{p.name})" for p in bar_charts(compared(rows), plots, MARK_NOTES)] + [""]
    md += ["## Tasks", "", "Per model and probe: the split sizes, the scores on valid (where the probe's "
           "settings were chosen) and test, and the chosen settings.", ""]
    for task in sorted({f["task"] for f in found}):
        md += _task_section(task, [f for f in found if f["task"] == task])
    md += _loss_section(run)
    pca = []
    for model, task, store in run.stores():
        name = f"pca-{model}-{task}.png"
        try:
            pca_scatter(store, plots / name)
        except StoreError as exc:  # damaged from outside: the table stands without its picture
            print(f"musicrep: warning: no PCA plot: {exc}", file=sys.stderr)
            continue
        pca.append(f"![{model} / {task}](plots/{name})")
    if pca:
        md += ["## Embeddings", "", "The test split's track embeddings on their first two principal components, "
               "one colour and marker per class.", "", *pca, ""]
    settings = run.pipeline
    if settings.is_file():
        md += ["## Settings", "", "The pipeline this run was made with (`pipeline.toml`):", "", "```toml",
               settings.read_text().rstrip(), "```", ""]
    atomic.write_text(run.report, "\n".join(md))


def write_report(run_dir: str | Path) -> str:
    """Write report.md, results.json, results.csv and plots/ into ``run_dir``; return the text table."""
    report = render_report(run_dir)
    write_report_files(run_dir, report)
    return report.text
