"""Two commands on one run directory: a second ``musicrep run`` is refused while the first holds
the lock (and the first ends as if alone); ``musicrep report`` during a run shows only whole
results. A lock never outlives its holder: the kill -9 tests rerun at once after each kill."""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from killing import (ENV, MODEL, PROBES, TASK, Process, assert_same_outputs, command, lock_holder, outputs,
                     probes_written, run_dir, steps_logged, undisturbed, write_pipeline)
from musicrep.errors import MusicrepError
from musicrep.rundir import RunDir


def side_by_side(*commands: tuple[str | Path, ...]) -> list[subprocess.CompletedProcess]:
    """Commands run at the same time, each to its end."""
    started = [subprocess.Popen(command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
               for args in commands]
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=300), *p.communicate()) for p in started]


def report_rows(stdout: str) -> dict[str, str]:
    """probe -> the primary test value as the printed table shows it (its interval and mark,
    which follow the value in the cell, left out)."""
    rows = {}
    for line in stdout.splitlines():
        cells = line.split()
        if len(cells) >= 4 and cells[0] == TASK:
            rows[cells[1]] = cells[3]
    return rows


@pytest.mark.slow
def test_a_second_run_is_refused_and_a_report_during_a_run_reads_whole_results(tmp_path: Path) -> None:
    expected = ThreadPoolExecutor(1).submit(undisturbed)  # made meanwhile, unless made already
    pipeline = write_pipeline(tmp_path, "busy")
    run = run_dir(pipeline)
    first = Process("run", pipeline, log=tmp_path / "first.log")
    first.wait_for(lambda: lock_holder(run) == first.pid and steps_logged(run) >= 1, "the lock")
    first.pause()  # SIGSTOP: busy for as long as the others take, whatever the machine's speed
    try:
        second, early = side_by_side(("run", pipeline), ("report", run))
    finally:
        first.resume()
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert f"{run} is in use by another musicrep run (pid {first.pid} holds {run / '.lock'})" in second.stderr
    assert early.returncode == 2 and "Traceback" not in early.stderr
    assert f"{run}: no probe has finished yet" in early.stderr

    first.wait_for(lambda: len(probes_written(run)) >= 1, "a probe result")
    first.pause()  # stopped wherever it is: perhaps in the middle of writing the next result
    try:
        finished = probes_written(run)
        during = subprocess.run(command("report", run), capture_output=True, text=True, env=ENV, timeout=300)
    finally:
        first.resume()
    assert during.returncode == 0 and "Traceback" not in during.stderr, during.stderr
    shown = report_rows(during.stdout)
    assert set(shown) == set(finished) and len(finished) < len(PROBES)  # whole results, the run not done

    first.finish()
    assert_same_outputs(expected.result(), outputs(run))  # the first run ended as if it had been alone
    final = {row["probe"]: row["value"] for row in json.loads((run / "results.json").read_text())
             if row["primary"] and row["split"] == "test" and row["model"] == MODEL}
    assert shown == {probe: f"{final[probe]:.3f}" for probe in shown}  # what it showed was final


def held_by_another_process(run: Path) -> str | None:
    """The pid in the lock file if another process holds the lock (asked from a forked child:
    this process must not open the file, closing it would drop a record lock it holds)."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            with open(run / ".lock", "a+") as handle:
                try:
                    fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    handle.seek(0)
                    os.write(write, handle.read().encode() or b"?")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 32).decode()
    os.close(read)
    os.waitpid(child, 0)
    return answer or None


def test_the_lock_dies_with_its_holder_not_with_the_children_it_forked(tmp_path: Path) -> None:
    """A killed run's data-loader workers live on for seconds (forked: they share its open files);
    the same command, run again at once, must not find the run directory in use."""
    read, write = os.pipe()
    holder = os.fork()
    if holder == 0:  # the run: takes the lock, forks a worker that outlives it, dies by SIGKILL
        try:
            with RunDir(tmp_path).lock():
                worker = os.fork()
                if worker == 0:
                    time.sleep(60)
                    os._exit(0)
                os.write(write, str(worker).encode())
                os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(1)
    os.close(write)
    worker = int(os.read(read, 32))
    os.close(read)
    try:
        assert os.waitpid(holder, 0)[1] == signal.SIGKILL
        os.kill(worker, 0)  # the worker is still alive
        assert held_by_another_process(tmp_path) is None
        with RunDir(tmp_path).lock():
            assert held_by_another_process(tmp_path) == str(os.getpid())
            with pytest.raises(MusicrepError, match=f"pid {os.getpid()} holds {tmp_path / '.lock'}"):
                with RunDir(tmp_path).lock():  # nor twice by one process
                    pass
            assert held_by_another_process(tmp_path) == str(os.getpid())  # still held
        assert held_by_another_process(tmp_path) is None
    finally:
        os.kill(worker, signal.SIGKILL)
