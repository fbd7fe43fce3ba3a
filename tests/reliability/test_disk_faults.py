"""A full disk, a read-only folder, a file-size limit: each stops a run with one
``musicrep: error:`` line naming the file and the system's reason (exit 2, no traceback, no
crash), keeps what was finished, and the same command, once the cause is gone, ends where an
undisturbed run ends. ``musicrep report`` prints its table even where it cannot write.

Real limits, set on real processes: ``RLIMIT_FSIZE`` in the child, a small tmpfs and read-only
bind mounts where the tests run as root (elsewhere a folder without write permission).
"""
from __future__ import annotations

import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

from killing import ENV, MODEL, TASK, assert_same_outputs, command, outputs, run_dir, undisturbed, write_pipeline
from pipeline_fakes import synth_pitch_task

# Embedding and probing only (no pre-training): seconds, for the tests that need a finished run.
QUICK = """
[run]
name = "quick"
device = "cpu"

""" + synth_pitch_task(1.0) + """
[models.stats]
frontend = { type = "torch-mel", n_fft = 256, n_mels = 16, sample_rate = 8000 }
encoder = { type = "mel-stats", n_features = 16, n_mfcc = 4 }

[embed]
window = 0.5
hop = 0.25

[probe]
probes = [{ type = "linear" }, { type = "knn", k_grid = [1, 3] }]
"""


def musicrep(*args: str | Path, fsize: int | None = None) -> subprocess.CompletedProcess:
    """A ``musicrep`` command to its end; with ``fsize``, no file it writes may grow past that many bytes."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(command(*args), capture_output=True, text=True, env=ENV, timeout=600,
                          preexec_fn=limit if fsize is not None else None)


def the_error(result: subprocess.CompletedProcess) -> str:
    """The one error line of a command that stopped on a fault (and nothing that looks like a crash)."""
    err = result.stderr
    assert result.returncode == 2, f"exit {result.returncode}:\n{err[-4000:]}"
    assert "Traceback" not in err and "Segmentation" not in err and "Fatal" not in err, err[-4000:]
    errors = [line for line in err.splitlines() if line.startswith("musicrep: error:")]
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]), err[-4000:]
    assert errors[0].endswith("; finished work is kept"), errors[0]
    return errors[0]


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` and everything under it cannot be written (root ignores permission bits, so as
    root it becomes a read-only bind mount)."""
    if os.geteuid() != 0:
        dirs = [folder, *(p for p in folder.rglob("*") if p.is_dir())]
        for d in dirs:
            d.chmod(0o555)
        try:
            yield
        finally:
            for d in dirs:
                d.chmod(0o755)
        return
    if subprocess.run(["mount", "--bind", folder, folder], capture_output=True).returncode != 0:
        pytest.skip("running as root without the right to mount: no way to make a folder read-only")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", folder], check=True, capture_output=True)
        yield
    finally:
        subprocess.run(["umount", folder], check=True, capture_output=True)


@pytest.fixture
def quick_run(tmp_path: Path) -> tuple[Path, Path]:
    pipeline = tmp_path / "quick.toml"
    pipeline.write_text(QUICK)
    result = musicrep("run", pipeline)
    assert result.returncode == 0, result.stderr
    return pipeline, tmp_path / "runs" / "quick"


@pytest.mark.slow
def test_a_file_size_limit_in_pretraining_is_one_line_and_the_rerun_loses_nothing(tmp_path: Path) -> None:
    expected = ThreadPoolExecutor(1).submit(undisturbed)
    pipeline = write_pipeline(tmp_path, "limited")
    run = run_dir(pipeline)
    # pipeline.toml, the lock and the first log lines fit; the first checkpoint does not
    error = the_error(musicrep("run", pipeline, fsize=4096))
    assert f"File too large: {run / 'models' / MODEL / 'last.pt'}" in error, error
    assert not list(run.rglob("*.tmp"))
    again = musicrep("run", pipeline)
    assert again.returncode == 0, again.stderr
    assert_same_outputs(expected.result(), outputs(run))


def test_a_read_only_probe_folder_is_one_line_naming_the_result(quick_run: tuple[Path, Path]) -> None:
    pipeline, run = quick_run
    probes = run / "probes" / "stats" / "pitch"
    kept = (probes / "knn.json").read_text()
    (probes / "linear.json").unlink()
    with read_only(probes):
        error = the_error(musicrep("run", pipeline))
    assert str(probes / "linear.json") in error and ("Read-only" in error or "Permission denied" in error), error
    assert (probes / "knn.json").read_text() == kept
    assert musicrep("run", pipeline).returncode == 0
    assert (probes / "linear.json").exists()


def test_a_read_only_run_directory_still_reports_and_refuses_a_run_in_one_line(
        quick_run: tuple[Path, Path]) -> None:
    pipeline, run = quick_run
    written = musicrep("report", run)
    assert written.returncode == 0, written.stderr
    with read_only(run):
        report = musicrep("report", run)
        assert report.returncode == 0 and "Traceback" not in report.stderr, report.stderr
        assert report.stdout == written.stdout  # the whole table
        assert f"musicrep: warning: report files not written" in report.stderr, report.stderr
        assert str(run) in report.stderr
        error = the_error(musicrep("run", pipeline))
    assert str(run / ".lock") in error, error


@pytest.mark.slow
def test_a_full_disk_at_any_point_is_one_line_and_the_rerun_loses_nothing(tmp_path: Path) -> None:
    """A tmpfs that grows a little after each failed run: the run fails at whatever file no longer
    fits (checkpoints, the log, part files, the store, probe results, the report), always in one
    line, and in the end matches an undisturbed run."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    expected = ThreadPoolExecutor(1).submit(undisturbed)
    disk = Path(tempfile.mkdtemp(prefix="musicrep-tmpfs-"))
    size = 16  # KiB: the pipeline and the lock fit, the first checkpoint does not
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}k", "tmpfs", disk], capture_output=True).returncode:
        pytest.skip("running as root without the right to mount")
    try:
        pipeline = write_pipeline(tmp_path, "full")
        run = disk / "run"
        errors = []
        for _ in range(20):
            result = musicrep("run", pipeline, "--run-dir", run)
            if result.returncode == 0:
                break
            error = the_error(result)
            assert "No space left on device: " + str(run) in error, error
            errors.append(error)
            print(f"{size} KiB: {error}")
            size = int(size * 1.5)
            subprocess.run(["mount", "-o", f"remount,size={size}k", disk], check=True)
        else:
            raise AssertionError(f"still failing at {size} KiB: {errors[-3:]}")
        assert len(errors) >= 3, errors  # several stages hit on the way
        assert_same_outputs(expected.result(), outputs(run))
    finally:
        subprocess.run(["umount", disk], capture_output=True)
        shutil.rmtree(disk, ignore_errors=True)
