"""A checkpoint or run folder never makes musicrep import code (issue 25, item 1).

The payload is a Python file that creates a marker when imported. It is shipped next to the run
folder, the current directory is that folder's parent and ``''`` leads ``sys.path`` (as under
``python -c`` or ``python -m``): exactly where an unguarded ``importlib.import_module`` looks
first. The checkpoint itself is weights-only and valid; only its ``description`` is hostile.
"""
from __future__ import annotations

import random
import string
import sys
from pathlib import Path

import pytest
import torch

import musicrep
from musicrep import load_model
from musicrep.errors import MusicrepError
from musicrep.model import Embedder

from cli_in_process import cli

SR = 16000
TASK = """
[run]
name = "victim"
device = "cpu"

[tasks.pitch]
type = "synth"
label = "pitch"
n_classes = 3
n_train = 6
n_valid = 3
n_test = 3
seconds = 0.5

[embed]
window = 0.5
hop = 0.25

[probe]
probes = [{ type = "knn", k_grid = [1] }]
"""


def payload_name() -> str:
    return "payload_" + "".join(random.choices(string.ascii_lowercase, k=8))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The current directory is ``tmp_path``, with ``''`` first on ``sys.path``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", ["", *sys.path])
    yield tmp_path


def ship_payload(folder: Path, module: str) -> Path:
    """``folder/<module>.py``, a HEAR-looking module that leaves a marker when imported."""
    marker = folder / f"{module}.ran"
    (folder / f"{module}.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "def load_model(*a): raise SystemExit('payload ran')\n"
        "def get_scene_embeddings(*a): pass\n"
        "def get_timestamp_embeddings(*a): pass\n")
    return marker


def hostile_run(run: Path, module: str) -> Path:
    """A run folder whose weights-only ``final.pt`` describes a ``hear`` encoder importing ``module``."""
    embedder = Embedder(musicrep.get_component("frontend", "mel", sample_rate=SR, n_fft=256, hop_length=64,
                                               n_mels=16),
                        musicrep.get_component("encoder", "fcn", channels=[4], dim=8), window=0.5, hop=0.25)
    checkpoint = run / "models" / "mine" / "final.pt"
    checkpoint.parent.mkdir(parents=True)
    description = {"frontend": {"type": "waveform", "sample_rate": SR},
                   "encoder": {"type": "hear", "module": module}}
    torch.save({"key": "k", "embedder": embedder.state_dict(), "description": description}, checkpoint)
    return checkpoint


def test_load_model_refuses_a_description_that_imports_code(workdir: Path) -> None:
    module = payload_name()
    marker = ship_payload(workdir, module)
    checkpoint = hostile_run(workdir / "run2", module)
    for target in (workdir / "run2", checkpoint, "run2"):
        with pytest.raises(MusicrepError) as caught:
            load_model(target)
        message = str(caught.value)
        named = str(checkpoint if Path(target).is_absolute() else checkpoint.relative_to(workdir))
        assert "\n" not in message and named in message and "hear" in message, message
    assert not marker.exists() and module not in sys.modules


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_toml_loading_such_a_run_imports_nothing(workdir: Path, dry_run: bool) -> None:
    module = payload_name()
    marker = ship_payload(workdir, module)
    checkpoint = hostile_run(workdir / "run2", module)
    pipeline = workdir / "pipeline.toml"
    pipeline.write_text(TASK + '\n[models.theirs]\nload = "run2"\n')
    code, err = cli("run", *(["--dry-run"] if dry_run else []), pipeline)
    assert code == 2 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("musicrep: error:") and str(checkpoint) in last, err
    assert not marker.exists() and module not in sys.modules
    assert not (workdir / "runs").exists()


def test_the_users_own_hear_module_is_never_taken_from_the_current_directory(workdir: Path) -> None:
    module = payload_name()
    marker = ship_payload(workdir, module)
    with pytest.raises(MusicrepError, match=f"cannot import HEAR module '{module}'"):
        musicrep.get_component("encoder", "hear", module=module)
    assert not marker.exists() and module not in sys.modules
    assert sys.path[0] == ""  # the import left sys.path as it was


def test_a_hear_module_on_an_explicit_path_still_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the user put on the path themselves (PYTHONPATH, an install) is theirs: it imports."""
    module = payload_name()
    folder = tmp_path / "site"
    folder.mkdir()
    marker = ship_payload(folder, module)
    monkeypatch.syspath_prepend(str(folder))
    try:
        with pytest.raises(SystemExit, match="payload ran"):  # its load_model ran: the module was imported
            musicrep.get_component("encoder", "hear", module=module)
        assert marker.exists()
    finally:
        sys.modules.pop(module, None)
