"""Fuzz: HEAR task folders (task JSON, vocabulary, split files) and CSV manifests, random and
mutated, deeply nested, not UTF-8; and a vocabulary too large to size anything by."""
from __future__ import annotations

import csv
import functools
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import FUZZ, bytes_or_mutation, check_one_line, deeply_nested_json, json_values, nested, returns_or_one_line
from musicrep import get_component
from musicrep.tasks import MAX_LABELS, TaskDataError, encode_target

LABELS = ["kick", "snare", "hat"]


@functools.cache
def hear_files(kfold: bool) -> dict[str, bytes]:
    """A small valid HEAR task folder, as ``{relative path: bytes}`` (the audio is not read)."""
    splits = ["fold00", "fold01", "fold02"] if kfold else ["train", "valid", "test"]
    meta = {"task_name": "drums", "embedding_type": "scene", "prediction_type": "multiclass",
            "split_mode": "new_split_kfold" if kfold else "trainvaltest", "evaluation": ["top1_acc"],
            **({"nfolds": 3} if kfold else {})}
    files = {"task_metadata.json": json.dumps(meta).encode(),
             "labelvocabulary.csv": ("idx,label\n" + "".join(f"{i},{name}\n" for i, name in enumerate(LABELS))).encode()}
    for split in splits:
        files[f"{split}.json"] = json.dumps({f"{split}-{i}.wav": [LABELS[i % 3]] for i in range(6)}).encode()
        files[f"16000/{split}/.keep"] = b""
    return files


def build(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def read_task(task_type: str, path: Path, **options) -> None:
    task = get_component("task", task_type, path=str(path), **options)
    items = task.items()
    task.targets(items)
    for item in items[:5]:
        encode_target(task.kind, task.label_names, item.labels)
    task.describe()


def hostile_json() -> st.SearchStrategy[bytes]:
    return st.one_of(
        json_values.map(lambda v: json.dumps(v).encode()),
        deeply_nested_json,
        st.binary(max_size=256),
        st.text(max_size=64).map(lambda t: t.encode("utf-16")))


@FUZZ
@given(kfold=st.booleans(), data=st.data())
def test_a_hear_folder_reads_or_names_a_file(kfold: bool, data: st.DataObject) -> None:
    files = dict(hear_files(kfold))
    target = data.draw(st.sampled_from([name for name in files if not name.endswith(".keep")]))
    files[target] = data.draw(st.one_of(bytes_or_mutation(files[target]), hostile_json()))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "task"
        build(root, files)
        returns_or_one_line(lambda: read_task("hear", root), root)


def manifest_text(rows: list[tuple[str, str, str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows([("path", "label", "split"), *rows])
    return out.getvalue().encode()


@functools.cache
def valid_manifest() -> bytes:
    return manifest_text([(f"a{i}.wav", ("x", "y;z")[i % 2], ("train", "valid", "test")[i % 3]) for i in range(9)])


@FUZZ
@given(content=st.one_of(
    bytes_or_mutation(valid_manifest()),
    st.lists(st.tuples(st.text(max_size=12), st.text(max_size=12), st.text(max_size=8)), max_size=8).map(manifest_text),
    st.integers(1, 5).map(lambda n: b"path,label\n" + b"a.wav," + b'"' + b"x" * (200_000 * n) + b'"\n'),
    st.text(max_size=64).map(lambda t: t.encode("latin-1", "replace") + b"\xff\xfe")),
    kind=st.sampled_from(["multiclass", "multilabel", "regression"]), suffix=st.sampled_from([".csv", ".tsv"]))
def test_a_csv_manifest_reads_or_names_the_file(content: bytes, kind: str, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"manifest{suffix}"
        path.write_bytes(content)
        returns_or_one_line(lambda: read_task("csv", path, prediction_type=kind), path)


def test_a_vocabulary_beyond_the_bound_is_refused_by_name(tmp_path: Path) -> None:
    files = dict(hear_files(False))
    n = MAX_LABELS + int(np.random.default_rng().integers(1, 1000))
    files["labelvocabulary.csv"] = ("idx,label\n" + "".join(f"{i},l{i}\n" for i in range(n))).encode()
    build(tmp_path, files)
    with pytest.raises(TaskDataError, match=f"{tmp_path / 'labelvocabulary.csv'}: more than {MAX_LABELS} rows"):
        read_task("hear", tmp_path)
    files = dict(hear_files(False))  # a vocabulary built from the items (a manifest's) is bounded too
    rows = [(f"a{i}.wav", f"l{i}", "train") for i in range(n)]
    (tmp_path / "m.csv").write_bytes(manifest_text(rows))
    with pytest.raises(TaskDataError, match=f"{tmp_path / 'm.csv'}: {n} labels; musicrep takes at most {MAX_LABELS}"):
        read_task("csv", tmp_path / "m.csv")


def test_a_one_hot_target_is_one_row_not_an_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(np, "eye", lambda *a, **k: pytest.fail("np.eye sizes a matrix by the vocabulary"))
    names = [f"l{i}" for i in range(MAX_LABELS)]
    label = names[int(np.random.default_rng().integers(len(names)))]
    target = encode_target("multiclass", names, [label])
    assert target.shape == (MAX_LABELS,) and target.sum() == 1 and target[names.index(label)] == 1


def test_a_split_file_naming_a_path_outside_its_folder_is_refused(tmp_path: Path) -> None:
    files = dict(hear_files(False))
    files["train.json"] = json.dumps({"../../../etc/passwd": ["kick"], "a.wav": ["snare"]}).encode()
    build(tmp_path, files)
    with pytest.raises(TaskDataError, match=f"{tmp_path / 'train.json'}: '../../../etc/passwd' is not a file name"):
        read_task("hear", tmp_path)


@pytest.mark.parametrize("target", ["task_metadata.json", "train.json"])
@pytest.mark.parametrize("content", [nested(100_000), nested(100_000, '{"a":', "}"), "\udcff"])
def test_deeply_nested_or_undecodable_task_json_is_one_line(tmp_path: Path, target: str, content: str) -> None:
    """The cases a small fuzz budget may miss: JSON nested deeper than Python's parser recurses, and
    bytes that are not UTF-8."""
    files = dict(hear_files(False))
    files[target] = content.encode("utf-8", "surrogateescape")
    build(tmp_path, files)
    with pytest.raises(TaskDataError) as caught:
        read_task("hear", tmp_path)
    check_one_line(caught.value, (tmp_path / target,))
