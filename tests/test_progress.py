"""Progress in a log: a line every tenth or every 30 s, never a terminal bar's redraws."""
from __future__ import annotations

import io

import numpy as np

from musicrep.progress import ProgressLines, progress_bar


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_log_gets_a_line_per_tenth_and_no_carriage_returns() -> None:
    total = int(np.random.default_rng().integers(50, 500))
    out = io.StringIO()
    bar = progress_bar(total=total, desc="embed m/t", unit="track", file=out)
    assert isinstance(bar, ProgressLines)  # a StringIO is no terminal
    for _ in range(total):
        bar.update(1)
        bar.set_postfix(xrt="12")
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 10 and lines[-1].startswith(f"embed m/t: {total}/{total} track (100%)")
    assert lines[0].startswith(f"embed m/t: {-(-total // 10)}/{total} track (10%)") and "xrt=12" in lines[1]


def test_a_slow_stage_says_something_every_30_seconds() -> None:
    out, clock = io.StringIO(), Clock()
    bar = ProgressLines(total=1000, desc="pretrain", unit="step", initial=20, file=out, clock=clock)
    for _ in range(30):  # 30 steps of 10 s: 3 % of the total, so only the clock speaks
        clock.now += 10
        bar.update(1)
    bar.close()  # the last line (step 50, 300 s) is already out: not repeated
    assert len(out.getvalue().splitlines()) == 10  # at 30 s, 60 s, ..., 300 s
    assert out.getvalue().splitlines()[-1].startswith("pretrain: 50/1000 step (5%), 300.0 s")


def test_a_disabled_or_idle_bar_writes_nothing() -> None:
    out = io.StringIO()
    bar = progress_bar(total=10, desc="x", file=out, disable=True)
    for _ in range(10):
        bar.update(1)
    bar.close()
    idle = progress_bar(total=10, desc="y", initial=10, file=out)
    idle.close()  # a resumed stage with nothing left to do
    assert out.getvalue() == ""
