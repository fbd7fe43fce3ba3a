"""Reports: one table of tasks x models (the primary metric, best marked), as text and files."""
from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from musicrep import atomic
from musicrep.plots import bar_charts, pca_scatter
from musicrep.rundir import RunDir
from musicrep.store import StoreError


def collect(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every finished probe result under ``run_dir/probes`` as flat rows.

    Results are written atomically, so a run in progress shows only whole results; a file
    damaged from outside is named on stderr and left out (``musicrep run`` probes it again).
    """
    rows = []
    for model, task, probe, path in RunDir(Path(run_dir)).probe_results():
        try:
            result = json.loads(path.read_text())
            metrics, primary = result["metrics"], result["primary"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"musicrep: warning: {path}: unreadable probe result left out ({type(exc).__name__}); "
                  f"`musicrep run` probes it again", file=sys.stderr)
            continue
        for split, values in metrics.items():
            for metric, value in values.items():
                rows.append({"model": model, "task": task, "probe": probe, "split": split,
                             "metric": metric, "value": value, "primary": metric == primary})
    return rows


def table(rows: list[dict[str, Any]], split: str = "test") -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per task (and probe), one column per model; best marked with *."""
    primary = [r for r in rows if r["primary"] and r["split"] == split]
    models = sorted({r["model"] for r in primary})
    keys = sorted({(r["task"], r["probe"], r["metric"]) for r in primary})
    header = ["task", "probe", "metric", *models]
    body = []
    for task, probe, metric in keys:
        values = {r["model"]: r["value"] for r in primary
                  if (r["task"], r["probe"], r["metric"]) == (task, probe, metric)}
        finite = [v for v in values.values() if v == v]
        best = max(finite) if finite else None
        cells = []
        for model in models:
            value = values.get(model)
            cells.append("-" if value is None else f"{value:.4f}" + (" *" if value == best and len(values) > 1 else ""))
        body.append([task, probe, metric, *cells])
    return header, body


def format_table(header: list[str], body: list[list[str]], markdown: bool = False) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body)]
    def line(cells):
        padded = [str(c).ljust(w) for c, w in zip(cells, widths)]
        return ("| " + " | ".join(padded) + " |") if markdown else "  ".join(padded)
    lines = [line(header), ("|" + "|".join("-" * (w + 2) for w in widths) + "|") if markdown
             else "  ".join("-" * w for w in widths)]
    return "\n".join([*lines, *(line(r) for r in body)])


@dataclass
class Report:
    """A run's results, rendered: the text table and the rows behind it."""

    rows: list[dict[str, Any]]
    header: list[str]
    body: list[list[str]]

    @property
    def text(self) -> str:
        return format_table(self.header, self.body)


def render_report(run_dir: str | Path) -> Report:
    """The table of a run's finished probes; reads only (a read-only run directory is fine)."""
    rows = collect(RunDir(Path(run_dir)).root)
    return Report(rows, *table(rows))


def write_report_files(run_dir: str | Path, report: Report) -> None:
    """report.md, results.json, results.csv and plots/ in ``run_dir``; raises ``WriteError``."""
    run = RunDir(Path(run_dir))
    md = ("# musicrep report\n\nPrimary metric of each task on its test split; * marks the best model.\n\n"
          + format_table(report.header, report.body, markdown=True) + "\n")
    atomic.write_text(run.report, md)
    atomic.write_json(run.results_json, report.rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["model", "task", "probe", "split", "metric", "value", "primary"])
    writer.writeheader()
    writer.writerows(report.rows)
    atomic.write_text(run.results_csv, buffer.getvalue())
    with atomic.writing(run.plots):
        run.plots.mkdir(exist_ok=True)
    bar_charts(report.rows, run.plots)
    for model, task, store in run.stores():
        try:
            pca_scatter(store, run.plots / f"pca-{model}-{task}.png")
        except StoreError as exc:  # damaged from outside: the table stands without its picture
            print(f"musicrep: warning: no PCA plot: {exc}", file=sys.stderr)


def write_report(run_dir: str | Path) -> str:
    """Write report.md, results.json, results.csv and plots/ into ``run_dir``; return the text table."""
    report = render_report(run_dir)
    write_report_files(run_dir, report)
    return report.text
