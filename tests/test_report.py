"""The report: intervals in the table, the best marked only where the intervals say so, old
results still shown, report.md self-contained, plots that tell close values apart."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from musicrep.plots import class_style, value_axis
from musicrep.report import CLEAR, TIED, UNJUDGED, collect, table, write_report


def write_result(run_dir: Path, model: str, task: str, value: float, interval: list[float] | None,
                 probe: str = "linear", **extra) -> None:
    result = {"probe": probe, "kind": "multiclass", "primary": "accuracy", "chosen": {"c": 1.0, "valid_score": 0.9},
              "metrics": {"valid": {"accuracy": value + 0.01}, "test": {"accuracy": value}},
              "n": {"train": 100, "valid": 20, "test": 50}, "seed": 0, **extra}
    if interval is not None:
        result["interval"] = {"level": 0.95, "resamples": 1000, "over": "test items", "test": {"accuracy": interval}}
    path = run_dir / "probes" / model / task / f"{probe}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))


def marks_of(run_dir: Path) -> dict[str, str]:
    return {r["model"]: r["mark"] for r in collect(run_dir) if r["primary"] and r["split"] == "test"}


def test_best_is_marked_only_when_its_interval_is_clear(tmp_path: Path) -> None:
    rng = np.random.default_rng()
    best = rng.uniform(0.7, 0.9)
    gap = rng.uniform(0.03, 0.08)
    write_result(tmp_path, "a", "t", best, [best - 0.01, best + 0.01])
    write_result(tmp_path, "b", "t", best - gap, [best - gap - 0.01, best - gap + 0.005])
    write_result(tmp_path, "c", "t", best - 2 * gap, [best - 2 * gap - 0.01, best - 2 * gap + 0.01])
    assert marks_of(tmp_path) == {"a": CLEAR, "b": "", "c": ""}
    header, body = table(collect(tmp_path))
    assert header == ["task", "probe", "metric", "a", "b", "c"]
    assert body[0][3] == f"{best:.3f} [{best - 0.01:.3f}, {best + 0.01:.3f}] {CLEAR}"


def test_overlapping_intervals_mark_a_tie(tmp_path: Path) -> None:
    rng = np.random.default_rng()
    best = rng.uniform(0.7, 0.9)
    write_result(tmp_path, "a", "t", best, [best - 0.01, best + 0.01])
    write_result(tmp_path, "b", "t", best - 0.02, [best - 0.025, best - 0.015])  # the runner-up: clear of a
    write_result(tmp_path, "c", "t", best - 0.04, [best - 0.09, best + 0.005])   # wide: overlaps a
    # a model whose interval overlaps the best's spoils the win even where the runner-up's does not
    assert marks_of(tmp_path) == {"a": TIED, "b": "", "c": TIED}
    text = write_report(tmp_path)
    assert f"{TIED}: tied for best" in text.splitlines()[-1]
    report = (tmp_path / "report.md").read_text()
    assert f"\\{TIED}" in report  # escaped: a bare ~ is markup in markdown


def test_results_without_intervals_still_render(tmp_path: Path) -> None:
    write_result(tmp_path, "old", "t", 0.8, None)
    write_result(tmp_path, "new", "t", 0.7, [0.65, 0.75])
    rows = collect(tmp_path)
    old = next(r for r in rows if r["model"] == "old" and r["split"] == "test")
    assert old["low"] is None and old["mark"] == UNJUDGED
    header, body = table(rows)
    assert body[0][header.index("old")] == f"0.800 {UNJUDGED}"
    assert body[0][header.index("new")] == "0.700 [0.650, 0.750]"
    write_report(tmp_path)
    csv_text = (tmp_path / "results.csv").read_text()
    assert csv_text.splitlines()[0] == ("model,task,probe,split,metric,value,low,high,interval_method,mark,primary,"
                                        "seeds,spread,layer,judged,versus,paired_test,difference,p_value,"
                                        "difference_low,difference_high")
    assert (tmp_path / "plots" / "t-linear.png").stat().st_size > 0


def test_report_holds_what_a_reader_needs(tmp_path: Path) -> None:
    write_result(tmp_path, "a", "t", 0.9, [0.85, 0.95],
                 skipped=[{"id": "x", "path": "/data/x.wav", "reason": "empty file (0 bytes)"}])
    write_result(tmp_path, "b", "t", 0.6, [0.55, 0.65], skipped=[])
    (tmp_path / "models" / "a").mkdir(parents=True)
    losses = np.exp(-np.linspace(0, 3, 40)) + 0.1
    (tmp_path / "models" / "a" / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": i + 1, "loss": float(v), "lr": 1e-3}) + "\n" for i, v in enumerate(losses))
        + '{"step": 41, "lo')  # the torn line a kill leaves
    (tmp_path / "pipeline.toml").write_text('[run]\nname = "x"\nseed = 7\n')
    write_report(tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "100 / 20 / 50" in report                      # split sizes
    assert "0.9100" in report and "0.9000" in report      # valid and test scores
    assert "| c=1 " in report                             # the chosen settings
    assert "- /data/x.wav: empty file (0 bytes)" in report
    assert "seed = 7" in report                           # the run's settings
    for link in ("plots/t-linear.png", "plots/loss-a.png"):
        assert f"({link})" in report and (tmp_path / link).stat().st_size > 0
        assert (tmp_path / link).with_suffix(".pdf").read_bytes().startswith(b"%PDF")  # vector, for a paper
    assert f"40 steps; loss {losses[0]:.4f} at the first step, {losses[-1]:.4f} at the last" in report


def test_value_axis_separates_close_values() -> None:
    rng = np.random.default_rng()
    a = rng.uniform(0.85, 0.95)
    low, high = value_axis([a - 0.01, a + 0.02], [a + 0.01, a + 0.05])
    assert 0 < low < a - 0.01 and high > a + 0.05
    assert (0.04) / (high - low) > 0.3  # the 0.04 between the bars fills a visible share of the axis
    assert value_axis([0.001], [0.03], (0.0, 1.0))[0] == 0.0  # a metric in [0, 1] gets no negative axis
    assert value_axis([0.9], [1.0], (0.0, 1.0))[1] == 1.0  # ...and none past 1


@pytest.mark.parametrize("n_classes", [12, 24])
def test_every_class_gets_its_own_style(n_classes: int) -> None:
    styles = {(s["color"], s["marker"]) for s in map(class_style, range(n_classes))}
    assert len(styles) == n_classes


def test_a_model_over_seeds_is_one_column_with_mean_and_spread(tmp_path: Path) -> None:
    """``[run] seeds`` names each seed's model ``<model>.seed<N>``: the table shows one column per
    model (mean, standard deviation, seed count), marks compare intervals over the seeds, and
    results.csv keeps each seed's rows beside the row over them."""
    from scipy.stats import t

    rng = np.random.default_rng()
    a = rng.uniform(0.85, 0.9, 3)
    b = a.mean() - rng.uniform(0.15, 0.2) + rng.uniform(-0.01, 0.01, 3)  # far below: a is clear
    half = rng.uniform(0.005, 0.02, 3)
    for seed in range(3):
        write_result(tmp_path, f"a.seed{seed}", "t", a[seed], [a[seed] - half[seed], a[seed] + half[seed]])
        write_result(tmp_path, f"b.seed{seed}", "t", b[seed], [b[seed] - 0.01, b[seed] + 0.01])
    rows = collect(tmp_path)
    tested = {r["model"]: r for r in rows if r["primary"] and r["split"] == "test"}
    assert set(tested) == {"a", "b", *(f"{m}.seed{s}" for m in "ab" for s in range(3))}
    over = tested["a"]
    assert over["seeds"] == 3 and over["value"] == pytest.approx(a.mean())
    assert over["spread"] == pytest.approx(a.std(ddof=1))
    expected = np.hypot(half.mean(), t.ppf(0.975, 2) * a.std(ddof=1) / np.sqrt(3))
    assert (over["high"] - over["low"]) / 2 == pytest.approx(expected)
    assert over["mark"] == CLEAR and tested["b"]["mark"] == ""
    assert all(tested[f"a.seed{s}"]["mark"] == "" and tested[f"a.seed{s}"]["seeds"] is None for s in range(3))
    header, body = table(rows)
    assert header == ["task", "probe", "metric", "a", "b"]
    assert body[0][3] == f"{a.mean():.3f} ±{a.std(ddof=1):.3f} (3 seeds) {CLEAR}"
    text = write_report(tmp_path)
    assert "(n seeds): the mean over n seeds" in text
    csv_rows = (tmp_path / "results.csv").read_text().splitlines()
    assert sum(line.startswith("a.seed") for line in csv_rows) == 3 * 2  # valid and test rows per seed
    assert sum(line.startswith("a,") for line in csv_rows) == 2


def test_seeds_that_overlap_tie(tmp_path: Path) -> None:
    """Two models whose seeds spread wider than their gap are tied, however narrow each seed's
    own interval: the seeds' spread is part of the interval over them."""
    rng = np.random.default_rng()
    middle, spread, gap = rng.uniform(0.8, 0.85), rng.uniform(0.02, 0.04), rng.uniform(0.0, 0.01)
    for model, centre in (("a", middle + gap), ("b", middle)):
        for seed, offset in enumerate((-spread, 0.0, spread)):
            value = centre + offset
            write_result(tmp_path, f"{model}.seed{seed}", "t", value, [value - 0.001, value + 0.001])
    marks = marks_of(tmp_path)
    assert marks["a"] == TIED and marks["b"] == TIED
    assert all(marks[f"{m}.seed{s}"] == "" for m in "ab" for s in range(3))


def write_layer(run_dir: Path, model: str, layer: str, task: str, valid: float, test: float) -> None:
    path = run_dir / "probes" / model / task / ("linear.json" if layer == "out" else f"{layer}/linear.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"probe": "linear", "kind": "multiclass", "primary": "accuracy", "chosen": {},
                                "metrics": {"valid": {"accuracy": valid}, "test": {"accuracy": test}},
                                "interval": {"test": {"accuracy": [test - 0.05, test + 0.05]}},
                                "n": {"train": 100, "valid": 20, "test": 50}, "seed": 0}))


def test_the_best_layer_is_chosen_on_valid_never_on_test(tmp_path: Path) -> None:
    """Per task, ``<model>/best`` is the layer with the best valid score, whatever its test score;
    over seeds each seed chooses its own."""
    rng = np.random.default_rng()
    chosen = {}
    for seed in range(2):
        for task in ("t", "u"):
            valid = rng.permutation([0.5, 0.6, 0.7])   # each layer's valid score, in a fresh order
            test = rng.uniform(0.3, 0.9, 3)              # unrelated to valid
            for layer, v, t in zip(("block1", "block2", "out"), valid, test):
                write_layer(tmp_path, f"m.seed{seed}", layer, task, v, t)
            best = int(np.argmax(valid))
            chosen[seed, task] = (("block1", "block2", "out")[best], test[best])
    rows = [r for r in collect(tmp_path) if r["split"] == "test" and r["primary"]]
    for (seed, task), (layer, test) in chosen.items():
        row = next(r for r in rows if r["model"] == f"m.seed{seed}/best" and r["task"] == task)
        assert row["layer"] == layer and row["value"] == pytest.approx(test)
    for task in ("t", "u"):
        over = next(r for r in rows if r["model"] == "m/best" and r["task"] == task)
        assert over["value"] == pytest.approx(np.mean([chosen[s, task][1] for s in range(2)]))
    header, body = table(collect(tmp_path))
    assert header[3:] == ["m/best", "m/block1", "m/block2", "m/out"]
    text = write_report(tmp_path)
    assert "<model>/best: per task, the layer with the best valid score" in text
    assert f"m.seed0/best ({chosen[0, 't'][0]})" in (tmp_path / "report.md").read_text()


def test_a_single_layer_has_no_best(tmp_path: Path) -> None:
    write_layer(tmp_path, "m", "out", "t", 0.6, 0.7)
    write_result(tmp_path, "n", "t", 0.5, [0.45, 0.55])
    assert {r["model"] for r in collect(tmp_path)} == {"m", "n"}


def test_columns_tasks_and_probes_follow_the_pipeline(tmp_path: Path) -> None:
    """The table lists models, tasks and probes as the run's pipeline.toml does, not by name;
    names it does not list come after, by name."""
    rng = np.random.default_rng()
    for model in ("zeta", "alpha", "mid", "extra"):
        for task in ("beta", "alpha"):
            for probe in ("mlp", "knn"):
                value = rng.uniform(0.5, 0.9)
                write_result(tmp_path, model, task, value, [value - 0.1, value + 0.1], probe=probe)
    (tmp_path / "pipeline.toml").write_text(
        '[tasks.beta]\ntype = "synth"\n[tasks.alpha]\ntype = "synth"\n'
        '[models.zeta]\nencoder = "x"\n[models.mid]\nencoder = "x"\n[models.alpha]\nencoder = "x"\n'
        '[probe]\nprobes = [{ type = "mlp" }, { type = "knn" }]\n')
    from musicrep.report import render_report

    report = render_report(tmp_path)
    assert report.header == ["task", "probe", "metric", "zeta", "mid", "alpha", "extra"]
    assert [row[:2] for row in report.body] == [["beta", "mlp"], ["beta", "knn"], ["alpha", "mlp"], ["alpha", "knn"]]


def test_twelve_classes_get_twelve_colours() -> None:
    assert len({class_style(i)["color"] for i in range(12)}) == 12  # C and Bb, C# and B apart


def write_store(path: Path, kind: str, rng: np.random.Generator, scale: float, n: int = 60) -> None:
    """A task's view at ``path`` of a store of one window per item, every split present."""
    from musicrep.store import StoreWriter, TaskView, TrackEmbedding

    labels = [f"c{i}" for i in range(3)] if kind != "regression" else ["tempo"]
    store = path.with_suffix(".store")
    writer = StoreWriter(store, {"m": 1})
    targets = []
    for i in range(n):
        targets.append(np.eye(3, dtype=np.float32)[i % 3] if kind != "regression"
                       else np.array([rng.normal()], np.float32))
        x = (scale * rng.standard_normal((1, 6))).astype(np.float32)
        writer.add(TrackEmbedding(f"k{i}", x, np.zeros(1, np.float32)))
    writer.finish([f"k{i}" for i in range(n)])
    TaskView([str(i) for i in range(n)], [("train", "train", "valid", "test")[i % 4] for i in range(n)],
             [f"k{i}" for i in range(n)], np.stack(targets), kind, labels).write(path, store, {"m": 1})


@pytest.mark.parametrize("kind", ["multiclass", "regression"])
def test_pca_shows_every_split_on_a_standardised_scale(tmp_path: Path, kind: str) -> None:
    """Two models whose embeddings differ in scale 100-fold get PCA axes of the same extent, and
    every split is drawn (train, valid and test points all in the figure)."""
    import matplotlib

    matplotlib.use("Agg")
    from unittest import mock

    from musicrep import plots

    rng = np.random.default_rng()
    extents, counts = [], []
    for scale in (0.01, 1.0):
        write_store(tmp_path / f"s{scale}.h5", kind, rng, scale)
        with mock.patch.object(plots, "_pca_figure", wraps=plots._pca_figure) as figure:
            plots.pca_scatter(tmp_path / f"s{scale}.h5", tmp_path / f"p{scale}.png")
        xy, _, splits = figure.call_args.args[:3]
        extents.append(np.abs(xy).max())
        counts.append(sorted(set(splits.tolist())))
        assert (tmp_path / f"p{scale}.pdf").read_bytes().startswith(b"%PDF")
    assert counts == [["test", "train", "valid"]] * 2
    assert 0.3 < extents[0] / extents[1] < 3  # the same scale, though one model's numbers are 100x smaller


def test_a_readers_style_is_applied_and_a_missing_one_is_named(tmp_path: Path, monkeypatch) -> None:
    import matplotlib

    from musicrep.errors import MusicrepError
    from musicrep.plots import STYLE_VARIABLE, style

    own = tmp_path / "mine.mplstyle"
    own.write_text("font.size: 17.5\nsavefig.dpi: 150\n")
    monkeypatch.setenv(STYLE_VARIABLE, str(own))
    with style():
        assert matplotlib.rcParams["font.size"] == 17.5 and matplotlib.rcParams["savefig.dpi"] == 150
    monkeypatch.delenv(STYLE_VARIABLE)
    with style():
        assert matplotlib.rcParams["savefig.dpi"] == 300  # musicrep's own: print resolution
    monkeypatch.setenv(STYLE_VARIABLE, str(tmp_path / "none.mplstyle"))
    with pytest.raises(MusicrepError, match="none.mplstyle: neither a style file"):
        with style():
            pass


def test_a_full_disk_while_drawing_a_pdf_is_the_disk_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """matplotlib's PDF writer hides a full disk behind an AttributeError raised while it cleans
    up; the figure's writer reports the disk, naming the file (a full-disk run found it)."""
    import errno

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from musicrep import plots
    from musicrep.errors import WriteError

    def full_disk(self, fname, **kwargs):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise AttributeError("'Stream' object has no attribute 'pos'")

    fig = plt.figure()
    monkeypatch.setattr(type(fig), "savefig", full_disk)
    with pytest.raises(WriteError, match="No space left on device") as raised:
        plots._save(fig, tmp_path / "chart.png")
    assert "chart.png" in str(raised.value) and "\n" not in str(raised.value)
    plt.close(fig)
