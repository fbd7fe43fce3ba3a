"""The plan says what will happen: per task its items, classes and split sizes, and warnings
for a small test split, clips shorter than the embed window and listed files that do not exist."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicrep.pipeline.runner import run_pipeline
from musicrep.tasks import TaskDataError

PIPELINE = """
[run]
name = "planned"
device = "cpu"

[tasks.mine]
type = "csv"
path = "data/manifest.csv"

[models.small]
frontend = {{ type = "torch-mel", sample_rate = 8000, n_fft = 256, hop_length = 128, n_mels = 16 }}
encoder = {{ type = "fcn", channels = [4], dim = 8 }}

[embed]
window = 0.5
hop = 0.25
on_bad_audio = "{policy}"

[probe]
probes = [{{ type = "knn", k_grid = [1] }}]
"""


def write_task(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, list[float]]:
    """A manifest of generated clips of random lengths (some under the 0.5 s window) and one
    row whose file does not exist."""
    data = tmp_path / "data"
    data.mkdir()
    seconds = list(rng.uniform(0.6, 1.2, 6)) + list(rng.uniform(0.1, 0.45, 2))
    splits = ["train", "train", "train", "valid", "test", "test", "train", "test"]
    rows = ["path,label,split"]
    for i, (length, split) in enumerate(zip(seconds, splits)):
        sf.write(data / f"clip{i}.wav", rng.uniform(-0.5, 0.5, int(length * 8000)).astype(np.float32), 8000)
        rows.append(f"clip{i}.wav,{'ab'[i % 2]},{split}")
    rows.append("missing.wav,a,train")
    (data / "manifest.csv").write_text("\n".join(rows) + "\n")
    return data, seconds


def test_the_plan_counts_each_task_and_warns_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng()
    data, seconds = write_task(tmp_path, rng)
    path = tmp_path / "p.toml"
    path.write_text(PIPELINE.format(policy="skip"))
    assert run_pipeline(path, dry_run=True) is None
    err = capsys.readouterr().err
    assert "task mine: csv data/manifest.csv, multiclass, 9 items, 2 classes, train/valid/test 5/1/3" in err
    assert "warning: task mine: test split 'test' has 3 items (under 50)" in err
    assert "warning: task mine: valid split 'valid' has 1 items (under 30): the probes choose their settings" in err
    shortest = min(seconds)
    assert (f"warning: task mine: 2 of 8 clips are shorter than the 0.5 s embed window (shortest {shortest:.2f} s, "
            f"{data / f'clip{seconds.index(shortest)}.wav'})") in err
    assert f"warning: task mine: 1 listed audio file(s) do not exist and will be skipped as bad audio: " \
           f"{data / 'missing.wav'}" in err
    assert not (tmp_path / "runs").exists()


def test_a_missing_file_under_on_bad_audio_fail_stops_before_the_run_directory_exists(tmp_path: Path) -> None:
    write_task(tmp_path, np.random.default_rng())
    path = tmp_path / "p.toml"
    path.write_text(PIPELINE.format(policy="fail"))
    with pytest.raises(TaskDataError, match=r"task mine: 1 listed audio file\(s\) do not exist .*missing\.wav"):
        run_pipeline(path)
    assert not (tmp_path / "runs").exists()


def test_generated_clips_are_checked_by_what_the_task_knows(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A synth task has no files; its clips' length is in its items."""
    seconds = float(np.random.default_rng().uniform(0.25, 0.45))
    path = tmp_path / "p.toml"
    path.write_text(PIPELINE.format(policy="skip").replace(
        'type = "csv"\npath = "data/manifest.csv"',
        f'type = "synth"\nn_classes = 2\nn_train = 4\nn_valid = 2\nn_test = 60\nseconds = {seconds}'))
    run_pipeline(path, dry_run=True)
    err = capsys.readouterr().err
    assert "2 classes, train/valid/test 4/2/60" in err and "test split" not in err
    assert "valid split 'valid' has 2 items (under 30)" in err
    assert f"66 of 66 clips are shorter than the 0.5 s embed window (shortest {seconds:.2f} s" in err


def test_a_task_without_a_valid_split_warns_of_the_carved_one(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Without a valid split, the probes choose on 15 % of train: 40 train items give 6."""
    path = tmp_path / "p.toml"
    path.write_text(PIPELINE.format(policy="skip").replace(
        'type = "csv"\npath = "data/manifest.csv"',
        'type = "synth"\nn_classes = 2\nn_train = 40\nn_valid = 0\nn_test = 60\nseconds = 0.6'))
    run_pipeline(path, dry_run=True)
    err = capsys.readouterr().err
    assert "warning: task mine: valid split (15% carved from train) has 6 items (under 30)" in err


def test_unreadable_files_under_fail_stop_the_plan(tmp_path: Path) -> None:
    """A text file and random bytes named .wav: under on_bad_audio = "fail" the plan reads every
    listed file's header and stops there, in one line naming both, before any work."""
    rng = np.random.default_rng()
    write_task(tmp_path, rng)
    data = tmp_path / "data"
    (data / "notes.wav").write_text("not audio at all\n")
    (data / "noise.wav").write_bytes(rng.bytes(int(rng.integers(100, 4000))))
    manifest = data / "manifest.csv"
    rows = [r for r in manifest.read_text().splitlines() if not r.startswith("missing")]
    manifest.write_text("\n".join(rows + ["notes.wav,a,train", "noise.wav,b,test"]) + "\n")
    path = tmp_path / "p.toml"
    path.write_text(PIPELINE.format(policy="fail"))
    for dry_run in (True, False):
        with pytest.raises(TaskDataError) as caught:
            run_pipeline(path, dry_run=dry_run)
        message = str(caught.value)
        assert "\n" not in message and "2 listed audio file(s) are not readable audio" in message
        assert str(data / "notes.wav") in message and str(data / "noise.wav") in message
    assert not (tmp_path / "runs").exists()
    path.write_text(PIPELINE.format(policy="skip"))
    assert run_pipeline(path, dry_run=True) is None  # under "skip" they are skipped later, not refused


def test_a_missing_task_folder_names_the_toml_and_its_section(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(PIPELINE.format(policy="skip").replace(
        'type = "csv"\npath = "data/manifest.csv"', 'type = "gtzan"\npath = "nowhere/gtzan"'))
    with pytest.raises(TaskDataError) as caught:
        run_pipeline(path, dry_run=True)
    message = str(caught.value)
    assert message.startswith(f"{path} [tasks.mine]: ") and str(tmp_path / "nowhere" / "gtzan") in message
    assert "does not exist" in message and "\n" not in message
