"""musicrep writes only into a run folder it made (marked by ``.musicrep-run``) or an empty one,
deletes nothing behind a symbolic link, and reads a task's labels from the task, never from a
store file someone could have changed (issue 25, items 2, 3 and 6)."""
from __future__ import annotations

import json
import os
import random
import string
from pathlib import Path

import h5py
import pytest

from cli_in_process import cli

PIPELINE = """
[run]
name = "mine"
device = "cpu"
{dir}

[tasks.pitch]
type = "synth"
label = "pitch"
n_classes = 3
n_train = 9
n_valid = 3
n_test = 3
seconds = 0.5

[models.small]
frontend = {{ type = "mel", n_fft = 256, hop_length = 128, n_mels = 16 }}
encoder = {{ type = "fcn", channels = [4], dim = 8 }}

[embed]
window = 0.5
hop = 0.25
num_workers = 0

[probe]
probes = [{{ type = "knn", k_grid = [1] }}]
"""


def words(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_letters + " ", k=80))


def someone_elses_folder(path: Path, rng: random.Random) -> dict[Path, str]:
    """A folder with a user's own files in it (a report, results, a note)."""
    files = {path / "report.md": words(rng), path / "results.csv": words(rng), path / "notes" / "plan.txt": words(rng)}
    for file, text in files.items():
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
    return files


def assert_refused(code: int, err: str, folder: Path, files: dict[Path, str]) -> None:
    assert code == 2 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert str(folder) in last and "not a musicrep run folder" in last, err
    assert all(file.read_text() == text for file, text in files.items())
    assert not (folder / ".musicrep-run").exists() and not (folder / "models").exists()


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_toml_naming_someone_elses_folder_is_refused_before_any_work(tmp_path: Path, dry_run: bool) -> None:
    rng = random.Random()
    victim = tmp_path / "victim"
    files = someone_elses_folder(victim, rng)
    project = tmp_path / "a" / "b" / "c"
    project.mkdir(parents=True)
    toml = project / "pipeline.toml"
    toml.write_text(PIPELINE.format(dir='dir = "../../../victim"'))
    code, err = cli("run", *(["--dry-run"] if dry_run else []), toml)
    assert code == 2 and "Traceback" not in err and "not a musicrep run folder" in err.strip().splitlines()[-1], err
    assert all(file.read_text() == text for file, text in files.items())
    assert not (victim / "pipeline.toml").exists() and not (victim / "models").exists()


def test_run_dir_dot_in_a_project_folder_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = someone_elses_folder(tmp_path, random.Random())
    toml = tmp_path / "pipeline.toml"
    toml.write_text(PIPELINE.format(dir=""))
    files[toml] = toml.read_text()
    monkeypatch.chdir(tmp_path)
    code, err = cli("run", toml, "--run-dir", ".")
    assert_refused(code, err, Path("."), files)


@pytest.mark.skipif(not Path("/root").is_dir() or not os.access("/root", os.R_OK) or not any(Path("/root").iterdir()),
                    reason="needs a non-empty /root to aim at")
def test_a_toml_aiming_at_root_s_home_is_refused(tmp_path: Path) -> None:
    before = sorted(p.name for p in Path("/root").iterdir())
    toml = tmp_path / "pipeline.toml"
    toml.write_text(PIPELINE.format(dir='dir = "/root"'))
    code, err = cli("run", toml)
    assert code == 2 and "/root: not empty and not a musicrep run folder" in err.strip().splitlines()[-1], err
    assert sorted(p.name for p in Path("/root").iterdir()) == before


def test_a_new_or_empty_folder_is_taken_and_marked(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    toml = tmp_path / "pipeline.toml"
    toml.write_text(PIPELINE.format(dir=f'dir = "{empty}"'))
    code, err = cli("run", toml)
    assert code == 0, err
    assert (empty / ".musicrep-run").is_file() and (empty / "report.md").is_file()
    code, err = cli("run", toml)  # ours now: taken again
    assert code == 0 and "probe small/pitch/knn: cached" in err, err


def test_cleanup_at_start_never_follows_a_symbolic_link(tmp_path: Path) -> None:
    toml = tmp_path / "pipeline.toml"
    toml.write_text(PIPELINE.format(dir=""))
    assert cli("run", toml)[0] == 0
    run = tmp_path / "runs" / "mine"
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "deep").mkdir(parents=True)
    kept = [elsewhere / ".a.json.x1.tmp", elsewhere / "deep" / ".b.tmp"]
    for file in kept:
        file.write_text("someone's file")
    (run / "probes").rename(tmp_path / "old-probes")
    (run / "probes").symlink_to(elsewhere)  # the probes folder is a link to another place
    (run / "embeddings" / "inner").symlink_to(elsewhere / "deep")  # and a link inside a result folder
    (run / "models").mkdir(exist_ok=True)
    (run / "models" / ".c.tmp").symlink_to(elsewhere / "deep" / ".b.tmp")  # a link named like a leftover
    ours = run / "models" / ".last.pt.k3j4.tmp"
    ours.write_text("half")
    cli("run", toml)  # whatever it makes of a probes folder that is a link, it deletes nothing there
    assert all(file.read_text() == "someone's file" for file in kept)
    assert not ours.exists()  # its own leftovers are still cleared


def test_labels_and_kind_come_from_the_task_not_from_a_changed_store_file(tmp_path: Path) -> None:
    toml = tmp_path / "pipeline.toml"
    toml.write_text(PIPELINE.format(dir=""))
    assert cli("run", toml)[0] == 0
    run = tmp_path / "runs" / "mine"
    result = run / "probes" / "small" / "pitch" / "knn.json"
    before = json.loads(result.read_text())
    stores = [p for p in (run / "embeddings" / "small").glob("*.h5")]
    for store in stores:  # someone edits the file: another label name, another kind
        with h5py.File(store, "r+") as h5:
            names = json.loads(h5.attrs["label_names"])
            h5.attrs["label_names"] = json.dumps(["not-" + names[0], *names[1:]])
            h5.attrs["kind"] = "multilabel"
    code, err = cli("run", toml, "--force", "probe")
    assert code == 0, err
    after = json.loads(result.read_text())
    assert after["kind"] == "multiclass" and after["primary"] == before["primary"]
    assert after["metrics"] == before["metrics"]
    for store in stores:
        with h5py.File(store, "r") as h5:
            assert h5.attrs["kind"] == "multiclass" and not json.loads(h5.attrs["label_names"])[0].startswith("not-")
