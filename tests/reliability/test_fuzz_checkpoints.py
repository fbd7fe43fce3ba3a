"""Fuzz: checkpoints (``final.pt``/``last.pt``) as random bytes, truncated, or mutated valid ones,
read by ``read_checkpoint`` and by ``musicrep.load_model`` on a run folder; and zip bombs."""
from __future__ import annotations

import functools
import io
import tempfile
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import musicrep
from fuzzing import FUZZ, bytes_or_mutation, mutated, returns_or_one_line, scaled
from musicrep.checkpoint import CheckpointError, read_checkpoint
from musicrep.model import Embedder

SR = 16000


@functools.cache
def valid_checkpoint() -> bytes:
    """A pre-training checkpoint as musicrep writes one: weights, description, key."""
    config = {"sample_rate": SR, "n_fft": 256, "hop_length": 128, "n_mels": 8}
    embedder = Embedder(musicrep.get_component("frontend", "mel", **config),
                        musicrep.get_component("encoder", "fcn", channels=[2], dim=4), window=0.5, hop=0.25)
    description = {"frontend": {"type": "mel", **config}, "encoder": {"type": "fcn", "channels": [2], "dim": 4}}
    buffer = io.BytesIO()
    torch.save({"key": "k", "step": 3, "embedder": embedder.state_dict(), "description": description}, buffer)
    return buffer.getvalue()


def written(folder: Path, data: bytes) -> Path:
    path = folder / "run" / "models" / "m" / "final.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@FUZZ
@given(data=bytes_or_mutation(valid_checkpoint()))
def test_read_checkpoint_returns_or_names_the_file(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = written(Path(tmp), data)
        returns_or_one_line(lambda: read_checkpoint(path), path)


@scaled(2)
@given(data=st.one_of(mutated(valid_checkpoint()), st.binary(max_size=512)), target=st.sampled_from(["run", "file"]))
def test_load_model_on_a_damaged_run_returns_or_names_the_file(data: bytes, target: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = written(Path(tmp), data)
        returns_or_one_line(lambda: musicrep.load_model(path.parents[2] if target == "run" else path), path)


RUN_TOML = b'[run]\nname = "r"\n\n[embed]\nwindow = 0.5\nhop = 0.25\npooling = "mean+std"\n'


@scaled(2)
@given(toml=st.one_of(mutated(RUN_TOML), st.binary(max_size=256)))
def test_load_model_on_a_run_with_a_damaged_pipeline_returns_or_names_it(toml: bytes) -> None:
    """The run's own ``pipeline.toml`` is read for its windowing: it is someone else's file too."""
    with tempfile.TemporaryDirectory() as tmp:
        path = written(Path(tmp), valid_checkpoint())
        run = path.parents[2]
        (run / "pipeline.toml").write_bytes(toml)
        returns_or_one_line(lambda: musicrep.load_model(run), run / "pipeline.toml", path)


def test_the_valid_checkpoint_still_loads(tmp_path: Path) -> None:
    model = musicrep.load_model(written(tmp_path, valid_checkpoint()).parents[2])
    assert model.dim == 4


def test_a_checkpoint_that_inflates_beyond_its_size_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "final.pt"
    original = zipfile.ZipFile(io.BytesIO(valid_checkpoint()))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for entry in original.infolist():
            out.writestr(entry.filename, original.read(entry))
        out.writestr("archive/data/extra", bytes(64 << 20))  # 64 MiB of zeros: ~64 KiB deflated
    assert path.stat().st_size < 1 << 20
    with pytest.raises(CheckpointError, match=f"{path}: refused: its entries inflate to"):
        read_checkpoint(path)


def test_a_legacy_format_file_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "legacy.pt"
    torch.save({"w": torch.zeros(3)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match=f"{path}: not a readable checkpoint \\(not the zip format"):
        read_checkpoint(path)
