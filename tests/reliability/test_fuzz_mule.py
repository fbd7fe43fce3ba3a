"""Fuzz: MULE weights folders (``model.safetensors`` + ``config.json``), random and mutated, read by
``plugins/mule.py``. The weights are checked against a small embedder, so each example is cheap: the
readers and checks are the same whatever model the tensors are meant for."""
from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import save

import musicrep
from musicrep.errors import MusicrepError
from fuzzing import FUZZ, bytes_or_mutation, check_one_line, deeply_nested_json, json_values, nested, returns_or_one_line
from musicrep.model import Embedder
from musicrep.plugins.mule import MULE_ARCHITECTURE, MULE_FRONTEND, load_mule_weights

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.int64, torch.bool,
          torch.complex64]


@functools.cache
def valid_files() -> dict[str, bytes]:
    tensors = {"frontend.mel_fb": torch.rand(1025, 96), "backbone.slow_stem.convs.0.weight": torch.randn(4, 1, 3, 3),
               "frontend.stft.window": torch.ones(400)}
    return {"config.json": json.dumps({**MULE_FRONTEND, **MULE_ARCHITECTURE}).encode(), "model.safetensors": save(tensors)}


def small_embedder() -> Embedder:
    return Embedder(musicrep.get_component("frontend", "mel", sample_rate=16000, n_fft=256, hop_length=128, n_mels=8),
                    musicrep.get_component("encoder", "fcn", channels=[2], dim=4), window=0.5, hop=0.25)


@st.composite
def random_safetensors(draw: st.DrawFn) -> bytes:
    names = st.sampled_from(["frontend.mel_fb", "frontend.stft.x", "backbone.fast_stages.0.blocks.1.convs.2.weight",
                             "encoder.body.0.weight", "backbone.fusions.0.conv1.bias"]) | st.text(min_size=1, max_size=20)
    tensors = {}
    for name in draw(st.lists(names, max_size=4, unique=True)):
        shape = draw(st.lists(st.integers(0, 5), max_size=3))
        tensors[name] = torch.zeros(shape, dtype=draw(st.sampled_from(DTYPES)))
    return save(tensors)


@FUZZ
@given(target=st.sampled_from(["config.json", "model.safetensors"]), data=st.data(),
       read=st.sampled_from(["folder", "file"]))
def test_a_mule_weights_folder_loads_or_names_a_file(target: str, data: st.DataObject, read: str) -> None:
    files = dict(valid_files())
    if target == "config.json":
        files[target] = data.draw(st.one_of(bytes_or_mutation(files[target]),
                                            json_values.map(lambda v: json.dumps(v).encode()),
                                            deeply_nested_json))
    else:
        files[target] = data.draw(st.one_of(bytes_or_mutation(files[target]), random_safetensors()))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "mule"
        folder.mkdir()
        for name, content in files.items():
            (folder / name).write_bytes(content)
        where = folder if read == "folder" else folder / "model.safetensors"
        returns_or_one_line(lambda: load_mule_weights(small_embedder(), where), folder)


def test_deeply_nested_config_json_is_one_line(tmp_path: Path) -> None:
    """The case a small fuzz budget may miss: JSON nested deeper than Python's parser recurses."""
    for name, content in valid_files().items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "config.json").write_text(nested(100_000))
    with pytest.raises(MusicrepError) as caught:
        load_mule_weights(small_embedder(), tmp_path)
    check_one_line(caught.value, (tmp_path / "config.json",))
