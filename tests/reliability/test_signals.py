"""SIGTERM stops a run as Ctrl-C does (the same message, the finished work kept, exit 143), and
Ctrl-C pressed again and again while a run shuts down changes nothing: one message, no traceback,
exit 130. The stopped run, run again, ends bit for bit where an undisturbed run ends."""
from __future__ import annotations

import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from killing import (CHECKPOINT_EVERY, MODEL, TRACKS, Process, assert_same_outputs, outputs, parts_written,
                     run_dir, steps_logged, tracks_in_parts, undisturbed, write_pipeline)

MESSAGE = "musicrep: interrupted; finished work is kept, run the same command to resume"


def assert_one_quiet_message(output: str) -> None:
    assert output.count(MESSAGE) == 1, output
    for noise in ("Traceback", "Exception ignored", "KeyboardInterrupt", "Error"):
        assert noise not in output, output


@pytest.mark.slow
def test_sigterm_and_repeated_ctrl_c_stop_a_run_quietly_and_the_rerun_loses_nothing(tmp_path: Path) -> None:
    expected = ThreadPoolExecutor(1).submit(undisturbed)
    pipeline = write_pipeline(tmp_path, "signalled")
    run = run_dir(pipeline)
    models = run / "models" / MODEL

    # SIGTERM in pre-training, after a checkpoint
    process = Process("run", pipeline, log=tmp_path / "1.log")
    process.wait_for(lambda: steps_logged(run) >= 2 * CHECKPOINT_EVERY + 1, "two checkpoints")
    process.popen.send_signal(signal.SIGTERM)
    assert process.popen.wait(timeout=120) == 128 + signal.SIGTERM, process.output()
    assert_one_quiet_message(process.output())
    saved = torch.load(models / "last.pt", weights_only=True)["step"]
    assert saved >= 2 * CHECKPOINT_EVERY

    # Ctrl-C, then Ctrl-C again every few milliseconds until the process is gone: the first
    # stops the embedding (its finished tracks are written to a part file), the rest change nothing
    process = Process("run", pipeline, log=tmp_path / "2.log")
    process.wait_for(lambda: parts_written(run) >= 2, "two part files")
    deadline = time.monotonic() + 120
    while process.running() and time.monotonic() < deadline:
        process.popen.send_signal(signal.SIGINT)
        time.sleep(0.002)
    assert process.popen.wait(timeout=10) == 128 + signal.SIGINT, process.output()
    assert_one_quiet_message(process.output())
    assert json.loads((models / "pretrain.json").read_text())["summary"]["resumed_from"] == saved
    kept = tracks_in_parts(run)
    assert 0 < kept < TRACKS

    text = Process("run", pipeline, log=tmp_path / "3.log").finish()
    assert f"{kept} of {TRACKS} tracks already embedded, {TRACKS - kept} to go" in text  # only the rest
    assert f"/{TRACKS - kept} track" in text  # the progress line counts the tracks left
    assert_same_outputs(expected.result(), outputs(run))
