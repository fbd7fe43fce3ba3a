"""The store reader against damaged and hostile files: mutated attributes, truncated files and
random bytes give a sound read or one ``StoreError`` line naming the file, nothing else."""
from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from musicrep.embed import extract
from musicrep.model import Embedder
from musicrep.plugins.encoders import FCN
from musicrep.store import ContentStore, EmbeddingStore, StoreError
from pipeline_fakes import FrameFrontend, ToneTask

VALUES = st.one_of(st.text(max_size=40), st.integers(-2**40, 2**40), st.floats(allow_nan=True),
                   st.sampled_from(['[]', '{}', '[{"id": 1}]', '["out"]', '"x"', "null", '{"keys": 5}', "[1, 2]",
                                    '[{"id": "a", "path": "b", "reason": "c"}]']),
                   st.binary(min_size=1, max_size=20), st.booleans())


@pytest.fixture(scope="module")
def sound(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sound")
    torch.manual_seed(0)
    embedder = Embedder(FrameFrontend(FrameFrontend.Config()), FCN(FCN.Config(channels=[4], dim=8)), window=0.5,
                        hop=0.25)
    extract(embedder, ToneTask(ToneTask.Config(per_class=2, seconds=0.6, bad_items=1)), folder / "v.h5", {"m": 1},
            progress=False, num_workers=0, layers=("block1", "out"))
    return folder


def read_everything(view: Path) -> None:
    with EmbeddingStore(view) as store:
        store.embeddings(), store.targets("train"), store.embeddings("test", layer="block1")
        for i in range(len(store)):
            store.timeline(i, layer="block1")
        store.label_names, store.kind, store.skipped
    with ContentStore(view.with_name("v.h5.store")) as store:
        store.damage()
        for _ in store.chunks(2):
            pass


def copy(sound: Path, to: Path) -> tuple[Path, Path]:
    if to.exists():
        shutil.rmtree(to)
    shutil.copytree(sound, to)
    view = to / "v.h5"
    (segment,) = sorted(to.glob("v.h5.store/segments/*.h5"))
    return view, segment


def assert_one_line_naming(exc: StoreError, files: list[Path]) -> None:
    message = str(exc)
    assert "\n" not in message and any(str(f) in message for f in files), message


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(["view", "segment"]), data=st.data())
def test_mutated_attributes(sound: Path, tmp_path: Path, which: str, data: st.DataObject) -> None:
    view, segment = copy(sound, tmp_path / "copy")
    target = view if which == "view" else segment
    with h5py.File(target, "r+") as h5:
        name = data.draw(st.sampled_from(sorted(h5.attrs)))
        value = data.draw(VALUES)
        h5.attrs[name] = np.void(value) if isinstance(value, bytes) else value
    try:
        read_everything(view)
    except StoreError as exc:
        assert_one_line_naming(exc, [view, segment, segment.parent.parent])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(["view", "segment", "store.json"]), cut=st.floats(0.0, 0.999))
def test_truncated_files(sound: Path, tmp_path: Path, which: str, cut: float) -> None:
    view, segment = copy(sound, tmp_path / "copy")
    target = {"view": view, "segment": segment, "store.json": segment.parent.parent / "store.json"}[which]
    target.write_bytes(target.read_bytes()[: int(target.stat().st_size * cut)])
    try:
        read_everything(view)
    except StoreError as exc:
        assert_one_line_naming(exc, [target, segment.parent.parent])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(["view", "segment", "store.json"]), data=st.data())
def test_random_bytes(sound: Path, tmp_path: Path, which: str, data: st.DataObject) -> None:
    view, segment = copy(sound, tmp_path / "copy")
    target = {"view": view, "segment": segment, "store.json": segment.parent.parent / "store.json"}[which]
    raw = bytearray(target.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):  # or the whole file replaced by random bytes
        raw = bytearray(data.draw(st.binary(min_size=0, max_size=4096)))
    target.write_bytes(bytes(raw))
    try:
        read_everything(view)
    except StoreError as exc:
        assert_one_line_naming(exc, [target, view, segment, segment.parent.parent])
