"""Untrusted input never runs code and never writes outside the run directory.

A checkpoint whose pickle would call a function when loaded (here a harmless one: it creates a
marker file) is refused, naming the file, wherever musicrep meets it: ``load_model(path)``,
``load = "path"`` in a TOML (a dry run too), a planted ``models/<m>/final.pt`` or ``last.pt``.
musicrep's own checkpoints still load. Names that would become paths outside the run directory
are config errors, and the lock never follows a symbolic link.
"""
from __future__ import annotations

import json
import random
import string
from pathlib import Path

import pytest
import torch

from musicrep import load_model
from musicrep.errors import MusicrepError

from cli_in_process import cli
from pipeline_fakes import small_pretrain_pipeline


class RunsCode:
    """Unpickling this calls ``open(marker, "w")``: it stands for any code a pickle can run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def plant(path: Path, marker: Path) -> None:
    """A checkpoint shaped like musicrep's, with a payload that runs code when unpickled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"key": "x", "step": 1, "embedder": {"w": torch.zeros(2)}, "description": RunsCode(marker),
                "module": RunsCode(marker)}, path)


def pipeline_text(run: str = "safe", task: str = "pitch", model: str = "small") -> str:
    """The pipeline with these names (each written as a TOML string, whatever it holds)."""
    return small_pretrain_pipeline(run=json.dumps(run), task=json.dumps(task), model=json.dumps(model),
                                   data=json.dumps(task), checkpoint_every=1)


def write_pipeline(folder: Path, **names: str) -> Path:
    path = folder / "pipeline.toml"
    path.write_text(pipeline_text(**names))
    return path


def test_load_model_refuses_a_checkpoint_that_runs_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    checkpoint = tmp_path / "shared" / "final.pt"
    plant(checkpoint, marker)
    with pytest.raises(MusicrepError, match=str(checkpoint)):
        load_model(checkpoint)
    with pytest.raises(MusicrepError, match=str(checkpoint)):
        load_model(checkpoint.parent)
    assert not marker.exists()


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_toml_loading_a_checkpoint_that_runs_code_is_refused(tmp_path: Path, dry_run: bool) -> None:
    marker = tmp_path / "ran"
    plant(tmp_path / "theirs" / "final.pt", marker)
    pipeline = tmp_path / "loads.toml"
    pipeline.write_text(pipeline_text(run="loads").split('[models."small"]')[0]
                        + '[models.theirs]\nload = "theirs/final.pt"\n\n[embed]\nwindow = 0.5\nhop = 0.25\n')
    code, err = cli("run", *(["--dry-run"] if dry_run else []), pipeline)
    assert code == 2 and "Traceback" not in err, err
    assert str(tmp_path / "theirs" / "final.pt") in err.splitlines()[-1], err
    assert not marker.exists()


@pytest.mark.parametrize("planted", ["final.pt", "last.pt"])
@pytest.mark.parametrize("dry_run", [True, False])
def test_a_planted_checkpoint_in_a_run_is_never_unpickled(tmp_path: Path, planted: str, dry_run: bool) -> None:
    marker = tmp_path / "ran"
    pipeline = write_pipeline(tmp_path)
    models = tmp_path / "runs" / "safe" / "models" / "small"
    plant(models / planted, marker)
    (tmp_path / "runs" / "safe" / ".musicrep-run").write_text("")  # a run folder someone shared, marked as ours
    code, err = cli("run", *(["--dry-run"] if dry_run else []), pipeline)
    assert not marker.exists(), err
    if not (dry_run and planted == "last.pt"):  # a plan reads no resume point
        assert f"{models / planted}: refused: it names " in err, err  # named, and its work done again
    assert code == 0, err
    if not dry_run:  # the run's own checkpoints, written again, load weights-only
        for name in ("final.pt", "last.pt"):
            torch.load(models / name, weights_only=True)
        assert load_model(tmp_path / "runs" / "safe").dim == 8


def random_name(rng: random.Random) -> str:
    return rng.choice(string.ascii_letters) + "".join(rng.choice(string.ascii_letters + string.digits + "_-.")
                                                      for _ in range(rng.randint(0, 8))).replace("..", "._")


# "{tmp}": the test's own folder, so that a vulnerable build writes nothing outside it
BAD_NAMES = ["../../escaped", "{tmp}/x/data", "v1/rand", ".hidden", "..", "a/../b", "tab\tname", ""]


@pytest.mark.parametrize("where", ["task", "model", "run"])
@pytest.mark.parametrize("bad", BAD_NAMES)
def test_a_name_that_is_no_identifier_is_a_config_error_before_any_work(tmp_path: Path, where: str,
                                                                        bad: str) -> None:
    rng = random.Random()
    names = {"run": random_name(rng), "task": random_name(rng), "model": random_name(rng)}
    names[where] = bad.replace("{tmp}", str(tmp_path))
    folder = tmp_path / "a" / "b" / "pipeline-folder"  # "../../escaped" stays inside tmp_path
    folder.mkdir(parents=True)
    path = write_pipeline(folder, **names)
    before = set(tmp_path.rglob("*"))
    code, err = cli("run", path)
    assert code == 2 and "Traceback" not in err, err
    last = err.splitlines()[-1]
    assert last.startswith("musicrep: error:") and "name" in last, last
    assert set(tmp_path.rglob("*")) == before  # nothing written anywhere


def test_valid_names_still_run(tmp_path: Path) -> None:
    rng = random.Random()
    run, task, model = (random_name(rng) for _ in range(3))
    path = write_pipeline(tmp_path, run=run, task=task, model=model)
    code, err = cli("run", "--dry-run", path)
    assert code == 0, err


def test_the_lock_never_follows_a_symbolic_link(tmp_path: Path) -> None:
    victim = tmp_path / "precious.txt"
    content = "".join(random.choices(string.ascii_letters, k=64))
    victim.write_text(content)
    pipeline = write_pipeline(tmp_path)
    run = tmp_path / "runs" / "safe"
    run.mkdir(parents=True)
    (run / ".musicrep-run").write_text("")  # a run folder someone shared, marked as ours
    (run / ".lock").symlink_to(victim)
    code, err = cli("run", pipeline)
    assert code == 2 and "Traceback" not in err, err
    assert str(run / ".lock") in err.splitlines()[-1] and "link" in err.splitlines()[-1], err
    assert victim.read_text() == content
    assert not (run / "models").exists()


def test_no_path_of_the_run_directory_leads_outside_it(tmp_path: Path) -> None:
    """Behind the name check: the run directory itself refuses any path that climbs out of it."""
    from musicrep.rundir import RunDir

    run = RunDir(tmp_path / "runs" / "x")
    rng = random.Random()
    escape = "/".join([".."] * rng.randint(4, 7)) + "/" + random_name(rng)  # out of the deepest folder
    for make in (lambda n: run.model(n).path, lambda n: run.store(n, "t"), lambda n: run.store("m", n),
                 lambda n: run.probe_result("m", n, "linear"), lambda n: run.probe_result("m", "t", n),
                 lambda n: run.content_store(n)):
        with pytest.raises(MusicrepError, match="outside the run directory"):
            make(escape)
        with pytest.raises(MusicrepError, match="outside the run directory"):
            make("/" + random_name(rng))
        inside = make(random_name(rng))
        assert Path(inside).resolve().is_relative_to((tmp_path / "runs" / "x").resolve())
