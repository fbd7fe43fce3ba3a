"""Fuzzing the catalog readers and the content index file (issue 24; issue 25 item 5's rule).

Manifests, CSV catalogs and content index files come from outside: random bytes and mutations of
valid files must each return, or raise musicrep's own error in one line naming the file. The
content index never returns a digest that is not the file's: a damaged index is rebuilt.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from musicrep.catalog import read_catalog
from musicrep.content import ContentIndex
from musicrep.errors import MusicrepError

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

VALID_MANIFEST = b"# clips\n\nclip0.wav\n/abs/clip1.flac\r\n  sub/clip 2.mp3  \n"
VALID_CSV = b'path,label,split\nclip0.wav,a,train\n"sub/clip,1.wav","b;c",test\n\n/abs/x.ogg,,valid\n'
# bytes that parsers of text trip on: line ends, quotes, separators, NUL, a BOM, invalid UTF-8
TRICKY = [b"\n", b"\r", b"\r\n", b'"', b",", b"\t", b"#", b"\0", b"\xef\xbb\xbf", b"\xff", b"\xc3", b" ", b"path"]


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """``valid`` with a few bytes flipped, deleted, or tricky bytes inserted, or truncated."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 6))):
        where = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "delete", "insert", "repeat", "truncate"]))
        if action == "flip" and where < len(data):
            data[where] ^= 1 << draw(st.integers(0, 7))
        elif action == "delete":
            del data[where:where + draw(st.integers(1, 8))]
        elif action == "insert":
            data[where:where] = draw(st.sampled_from(TRICKY))
        elif action == "repeat":
            data[where:where] = draw(st.sampled_from(TRICKY)) * draw(st.integers(2, 5000))
        else:
            del data[where:]
    return bytes(data)


def read_or_one_line(path: Path) -> None:
    try:
        entries = list(read_catalog(path))
    except MusicrepError as exc:
        text = str(exc)
        assert "\n" not in text and str(path) in text, text
        return
    for entry in entries:  # what was read is a path and strings, nothing else
        assert isinstance(entry.path, str) and entry.path and "\0" not in entry.path
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in entry.metadata.items())


@FUZZ
@given(data=st.one_of(st.binary(max_size=3000), mutated(VALID_MANIFEST)))
def test_manifest_reader_returns_or_says_one_line(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "catalog.txt"
    path.write_bytes(data)
    read_or_one_line(path)


@FUZZ
@given(data=st.one_of(st.binary(max_size=3000), mutated(VALID_CSV), mutated(VALID_CSV.replace(b",", b"\t"))),
       suffix=st.sampled_from([".csv", ".tsv"]))
def test_csv_reader_returns_or_says_one_line(tmp_path: Path, data: bytes, suffix: str) -> None:
    path = tmp_path / f"catalog{suffix}"
    path.write_bytes(data)
    read_or_one_line(path)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], bytes]:
    """A folder of files, their digests saved in a valid index; the index file's bytes."""
    folder = tmp_path_factory.mktemp("fuzz-content")
    files = []
    for i in range(40):
        path = folder / f"clip{i}.wav"
        path.write_bytes(os.urandom(50 + i))
        os.utime(path, (1e9, 1e9))  # old: not racy, the index vouches for them
        files.append(path)
    index = ContentIndex(folder / "index.db")
    index.digests(files)
    index.close()
    return folder, files, (folder / "index.db").read_bytes()


@st.composite
def damaged_index(draw: st.DrawFn, valid: bytes) -> bytes:
    kind = draw(st.sampled_from(["random", "truncate", "flip", "zero-page"]))
    if kind == "random":
        return draw(st.binary(max_size=8192))
    if kind == "truncate":
        return valid[:draw(st.integers(0, len(valid) - 1))]
    data = bytearray(valid)
    if kind == "flip":
        for _ in range(draw(st.integers(1, 20))):
            data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
    else:
        start = draw(st.integers(0, len(data) // 512 - 1)) * 512
        data[start:start + 512] = bytes(512)
    return bytes(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_damaged_index_file_never_gives_a_wrong_digest(indexed, data: st.DataObject, caplog) -> None:
    folder, files, valid = indexed
    path = folder / "index.db"
    for leftover in folder.glob("index.db*"):
        leftover.unlink()
    path.write_bytes(data.draw(damaged_index(valid)))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="musicrep.content"):
        try:
            index = ContentIndex(path)
            got = index.digests(files)
            index.close()
        except MusicrepError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc), str(exc)
            return
    assert got == [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    for record in caplog.records:
        message = record.getMessage()
        assert "\n" not in message and str(path) in message, message
