"""Text from input is shown as the characters it holds: in the terminal no control sequence
reaches it (``\\x1b]0;...\\x07`` retitles it, ``\\x1b[2J`` clears it), in report.md no label
or path becomes markup or HTML, and in a figure no ``$...$`` becomes math text."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from musicrep.cli import main
from musicrep.errors import MusicrepError
from musicrep.text import code_fence, for_markdown, for_plot, for_terminal

TITLE = "\x1b]0;owned\x07"
CLEAR_SCREEN = "\x1b[2J"
MARKUP = "<img src=x onerror=alert(1)> **bold** _it_ | [link](http://x) `code` $x^2$ ~~s~~"


def test_for_terminal_escapes_every_control_character() -> None:
    shown = for_terminal(f"a{TITLE}b{CLEAR_SCREEN}c\u202ed\n\te\x00\x9b")
    assert not any(ord(ch) < 0x20 or 0x7f <= ord(ch) <= 0x9f or ch == "\u202e" for ch in shown)
    assert shown == "a\\x1b]0;owned\\x07b\\x1b[2Jc\\u202ed\\n\\te\\x00\\x9b"
    assert for_terminal("line\nnext\x1b", keep_newlines=True) == "line\nnext\\x1b"
    assert for_terminal("plain name-1.wav") == "plain name-1.wav"


def test_for_markdown_leaves_no_markup() -> None:
    shown = for_markdown(MARKUP + "\n# heading")
    # every markup character is backslash-escaped: none is left bare
    bare = [ch for i, ch in enumerate(shown) if ch in "<>*_|[]`$~#" and (i == 0 or shown[i - 1] != "\\")]
    assert bare == [] and "\n" not in shown
    assert for_markdown("a|b") == "a\\|b" and for_markdown("x\\y") == "x\\\\y"


def test_plot_labels_with_dollars_draw(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.set_title(for_plot("a $\\frac{1$ label"))
    ax.set_xlabel(for_plot("$x^2$ and a lone $"))
    fig.savefig(tmp_path / "f.png")  # the raw labels raise ValueError from matplotlib's math parser
    plt.close(fig)
    assert for_plot("$x$") == "\\$x\\$"


def test_code_fence_cannot_be_closed_by_its_text() -> None:
    text = 'name = "```\n# injected"\n````'
    lines = code_fence(text, "toml")
    assert lines[0] == "`````toml" and lines[-1] == "`````" and lines[1] == text


def write_probe(run: Path, model: str, task: str, skipped_path: str, label: str) -> None:
    items = {"ids": ["a", "b", "c"], "label_names": [label, "other"], "target": [0, 1, 0], "predicted": [0, 1, 1]}
    result = {"probe": "linear", "kind": "multiclass", "primary": "accuracy", "chosen": {"c": MARKUP},
              "metrics": {"valid": {"accuracy": 0.5}, "test": {"accuracy": 2 / 3}},
              "interval": {"test": {"accuracy": [0.2, 0.9]}, "method": {"accuracy": "Wilson score"}},
              "n": {"train": 3, "valid": 3, "test": 3}, "seed": 0, "items": items,
              "skipped": [{"id": "x", "path": skipped_path, "reason": f"bad {MARKUP}"}]}
    path = run / "probes" / model / task / "linear.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))


def test_report_escapes_names_labels_and_paths(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A shared run folder whose model folder, skipped paths, settings and store labels carry
    terminal sequences, markup and math: the terminal table shows them escaped, report.md as
    literal text, the figures draw."""
    from musicrep.store import StoreWriter, TaskView, TrackEmbedding

    run = tmp_path / "run"
    model = f"m{CLEAR_SCREEN}"
    write_probe(run, model, "t", f"/data/{TITLE}<b>x</b>|*.wav", "$\\frac{1$")
    write_probe(run, "plain", "t", "/data/y.wav", "C")
    label = "$\\frac{1$ <i>x</i>"
    view = run / "embeddings" / model / "t.h5"
    store = run / "stores" / "s"
    writer = StoreWriter(store, {"m": 1})
    rng = np.random.default_rng()
    for i in range(12):
        writer.add(TrackEmbedding(f"k{i}", rng.standard_normal((1, 4)).astype(np.float32), np.zeros(1, np.float32)))
    writer.finish([f"k{i}" for i in range(12)])
    TaskView([str(i) for i in range(12)], [("train", "valid", "test")[i % 3] for i in range(12)],
             [f"k{i}" for i in range(12)], np.stack([np.eye(2, dtype=np.float32)[i % 2] for i in range(12)]),
             "multiclass", [label, "*b*"]).write(view, store, {"m": 1})
    (run / "pipeline.toml").write_text(f'[run]\nname = "x"\n# {TITLE} ```\n')
    assert main(["report", str(run)]) == 0
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and "\x07" not in out + err
    assert "m\\x1b[2J" in out
    report = (run / "report.md").read_text()
    assert "\x1b" not in report and "\x07" not in report  # the settings block included
    assert not re.search(r"(?<!\\)<", report)  # no bare < anywhere: no HTML
    assert "\\<b\\>x\\</b\\>\\|\\*.wav" in report
    assert "\\*\\*bold\\*\\*" in report and "\\$x^2\\$" in report
    assert (run / "plots" / f"pca-{model}-t.png").stat().st_size > 0
    assert (run / "plots" / f"pca-{model}-t.pdf").stat().st_size > 0


def test_the_log_and_error_lines_escape(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from musicrep.pipeline.context import log
    from musicrep.progress import ProgressLines, progress_bar

    log(f"embed {TITLE}: done")
    bar = progress_bar(total=2, desc=f"pretrain {CLEAR_SCREEN}")
    bar.set_postfix(loss=f"1{TITLE}")
    bar.update(2)
    bar.close()
    assert isinstance(bar, ProgressLines)
    assert main(["report", str(tmp_path / f"no{CLEAR_SCREEN}such")]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err
    assert "embed \\x1b]0;owned\\x07: done" in err and "pretrain \\x1b[2J" in err and "no\\x1b[2Jsuch" in err
