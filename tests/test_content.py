"""The content index: digests cached under stat signatures, rehashed only when a file changed."""
from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from musicrep import content
from musicrep.content import ContentIndex, UnstableFileError, segment_key
from musicrep.errors import MusicrepError

PAST = time.time() - 3600  # files older than the racy window: their stat can vouch for them


def write(path: Path, data: bytes, *, age: bool = True) -> Path:
    path.write_bytes(data)
    if age:
        os.utime(path, (PAST, PAST))
    return path


def catalog(folder: Path, count: int, rng: np.random.Generator) -> list[Path]:
    return [write(folder / f"clip{i}.wav", rng.bytes(int(rng.integers(1, 5000)))) for i in range(count)]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths ``hash_file`` read, in order."""
    seen: list[str] = []
    real = content.hash_file

    def counting(path: str):
        seen.append(path)
        return real(path)

    monkeypatch.setattr(content, "hash_file", counting)
    return seen


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_digest_is_the_sha256_of_the_bytes_and_two_names_share_it(tmp_path: Path, rng) -> None:
    data = rng.bytes(3 * content.CHUNK + 17)  # more than one chunk
    a, b = write(tmp_path / "a.wav", data), write(tmp_path / "sub.flac", data)
    other = write(tmp_path / "c.wav", data[:-1] + bytes([data[-1] ^ 1]))
    index = ContentIndex()
    assert index.digest(a) == index.digest(str(b)) == hashlib.sha256(data).hexdigest()
    assert index.digest(other) != index.digest(a)


def test_unchanged_files_are_not_read_again_after_loading(tmp_path: Path, rng, reads: list[str]) -> None:
    files = catalog(tmp_path, 20, rng)
    first = ContentIndex(tmp_path / "index.db")
    digests = first.digests(files)
    assert digests == [sha256(f) for f in files]
    assert sorted(first.rehashed) == sorted(str(f) for f in files) and len(reads) == 20
    first.save()
    reads.clear()
    second = ContentIndex(tmp_path / "index.db")
    assert second.digests(files) == digests
    assert reads == [] and second.rehashed == []


def test_a_changed_file_is_rehashed_and_gets_its_new_digest(tmp_path: Path, rng, reads: list[str]) -> None:
    files = catalog(tmp_path, 10, rng)
    index = ContentIndex(tmp_path / "index.db")
    before = index.digests(files)
    index.save()
    changed = files[int(rng.integers(10))]
    write(changed, rng.bytes(64))
    os.utime(changed, (PAST + 1, PAST + 1))
    reads.clear()
    index = ContentIndex(tmp_path / "index.db")
    after = index.digests(files)
    assert index.rehashed == reads == [str(changed)]
    assert after[files.index(changed)] == sha256(changed) != before[files.index(changed)]
    assert [d for f, d in zip(files, after) if f != changed] == [d for f, d in zip(files, before) if f != changed]


def test_a_file_replaced_with_the_same_size_and_mtime_is_rehashed(tmp_path: Path, rng) -> None:
    target = write(tmp_path / "a.wav", rng.bytes(500))
    index = ContentIndex(tmp_path / "index.db")
    old = index.digest(target)
    index.save()
    st = target.stat()
    replacement = write(tmp_path / "b.wav", rng.bytes(500))
    os.utime(replacement, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(replacement, target)  # same name, size and mtime; another inode
    assert target.stat().st_mtime_ns == st.st_mtime_ns and target.stat().st_size == st.st_size
    index = ContentIndex(tmp_path / "index.db")
    assert index.digest(target) == sha256(target) != old
    assert index.rehashed == [str(target)]


def test_a_file_written_just_before_it_was_hashed_is_read_again(tmp_path: Path, rng, reads: list[str]) -> None:
    """A racy row (git's word): a rewrite within the same timestamp tick could keep its stat."""
    fresh = write(tmp_path / "a.wav", rng.bytes(100), age=False)
    index = ContentIndex(tmp_path / "index.db")
    index.digest(fresh)
    index.save()
    index = ContentIndex(tmp_path / "index.db")
    index.digest(fresh)
    assert reads == [str(fresh)] * 2


def test_file_names_that_are_not_utf8_are_indexed(tmp_path: Path, rng) -> None:
    path = write(tmp_path / os.fsdecode(b"clip-\xff\xfe.wav"), rng.bytes(100))
    index = ContentIndex(tmp_path / "index.db")
    assert index.digest(path) == sha256(path)
    index.close()
    index = ContentIndex(tmp_path / "index.db")
    assert index.digest(path) == sha256(path) and index.rehashed == []


def test_keys_are_absolute_paths_without_resolving_links(tmp_path: Path, rng, monkeypatch) -> None:
    target = write(tmp_path / "a.wav", rng.bytes(10))
    (tmp_path / "link.wav").symlink_to(target)
    monkeypatch.chdir(tmp_path)
    index = ContentIndex()
    assert index.digest("link.wav") == index.digest("./sub/../a.wav") == sha256(target)
    assert index.rehashed == [str(tmp_path / "link.wav"), str(tmp_path / "a.wav")]


def test_a_file_that_changes_while_read_is_read_again_or_refused(tmp_path: Path, rng, monkeypatch) -> None:
    path = write(tmp_path / "a.wav", rng.bytes(1000))
    real_fstat = os.fstat
    changes = {"left": 1}

    def fstat_then_append(fd: int) -> os.stat_result:
        result = real_fstat(fd)
        if changes["left"]:
            changes["left"] -= 1
            with open(path, "ab") as f:  # the file grows after the first look at it
                f.write(rng.bytes(10))
        return result

    monkeypatch.setattr(content.os, "fstat", fstat_then_append)
    assert ContentIndex().digest(path) == sha256(path)  # the second read saw a steady file
    changes["left"] = 10 ** 6
    with pytest.raises(UnstableFileError, match="a.wav: the file changed while it was read") as raised:
        ContentIndex().digest(path)
    assert isinstance(raised.value, OSError) and "\n" not in str(raised.value)


def test_missing_files_and_fifos_raise_oserror_without_blocking(tmp_path: Path) -> None:
    index = ContentIndex()
    with pytest.raises(FileNotFoundError):
        index.digest(tmp_path / "missing.wav")
    os.mkfifo(tmp_path / "pipe.wav")  # opening it for reading would wait for a writer forever
    with pytest.raises(UnstableFileError, match="not a regular file"):
        index.digest(tmp_path / "pipe.wav")
    with pytest.raises(OSError):
        index.digest(tmp_path)


def test_a_corrupt_index_file_is_set_aside_with_one_warning_and_rebuilt(tmp_path: Path, rng, caplog) -> None:
    files = catalog(tmp_path, 5, rng)
    path = tmp_path / "index.db"
    garbage = rng.bytes(4096)
    path.write_bytes(garbage)
    with caplog.at_level(logging.WARNING, logger="musicrep.content"):
        index = ContentIndex(path)
        assert index.digests(files) == [sha256(f) for f in files]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and str(path) in warnings[0] and "damaged content index" in warnings[0]
    assert "\n" not in warnings[0]
    assert (tmp_path / "index.db.damaged").read_bytes() == garbage  # kept for a post-mortem
    index.save()
    caplog.clear()
    assert ContentIndex(path).digests(files) == [sha256(f) for f in files]
    assert caplog.records == []


def test_a_database_of_another_schema_is_not_trusted(tmp_path: Path, rng, caplog) -> None:
    path = tmp_path / "index.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE files (path TEXT PRIMARY KEY, digest TEXT)")
    files = catalog(tmp_path, 3, rng)
    with caplog.at_level(logging.WARNING, logger="musicrep.content"):
        index = ContentIndex(path)
        assert index.digests(files) == [sha256(f) for f in files]
    assert len(caplog.records) == 1 and "not a musicrep content index" in caplog.records[0].getMessage()


def test_a_damaged_row_is_hashed_again_not_trusted(tmp_path: Path, rng, caplog) -> None:
    files = catalog(tmp_path, 4, rng)
    path = tmp_path / "index.db"
    index = ContentIndex(path)
    index.digests(files)
    index.close()
    victim = str(files[int(rng.integers(4))])
    with sqlite3.connect(path) as db:  # a flipped digest, its signature intact
        assert db.execute("UPDATE files SET digest = ? WHERE path = ?", ("0" * 64, os.fsencode(victim))).rowcount == 1
    with caplog.at_level(logging.WARNING, logger="musicrep.content"):
        index = ContentIndex(path)
        assert index.digests(files) == [sha256(f) for f in files]
    assert index.rehashed == [victim]
    assert len(caplog.records) == 1 and victim in caplog.records[0].getMessage()


KILLED_SAVE = """
import os, signal, sys
from musicrep.content import ContentIndex
paths = sys.argv[2:]
index = ContentIndex(sys.argv[1])
index.digests(paths[:len(paths) // 2])
index.save()
index.digests(paths[len(paths) // 2:])
calls = [0]
def kill_mid_write():
    calls[0] += 1
    if calls[0] == int(os.environ["KILL_AT"]):
        os.kill(os.getpid(), signal.SIGKILL)
index._db.set_progress_handler(kill_mid_write, 20)
index.save()
print("not killed")
"""


@pytest.mark.parametrize("trial", range(3))
def test_a_kill_mid_save_leaves_the_last_saved_index(tmp_path: Path, rng, reads: list[str], caplog,
                                                     trial: int) -> None:
    files = catalog(tmp_path, 400, rng)
    path = tmp_path / "index.db"
    child = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(path), *map(str, files)],
                           env={**os.environ, "KILL_AT": str(int(rng.integers(2, 40)))}, capture_output=True,
                           text=True, timeout=120)
    assert child.returncode == -9, child.stdout + child.stderr
    assert (tmp_path / "index.db-journal").exists()  # killed inside the write's transaction
    with caplog.at_level(logging.WARNING, logger="musicrep.content"):
        index = ContentIndex(path)
        assert index.digests(files) == [sha256(f) for f in files]
    assert caplog.records == []  # the hot journal was rolled back: nothing damaged
    assert sorted(index.rehashed) == sorted(str(f) for f in files[200:])  # the first save held


def test_an_index_in_memory_writes_nothing(tmp_path: Path, rng, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    files = catalog(tmp_path, 3, rng)
    index = ContentIndex()
    index.digests(files, progress=True)
    index.save()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f.name for f in files)
    assert len(index) == 3


def test_an_index_another_process_keeps_locked_is_one_line(tmp_path: Path, rng, monkeypatch) -> None:
    monkeypatch.setattr(content, "LOCK_TIMEOUT", 0.1)
    files = catalog(tmp_path, 2, rng)
    index = ContentIndex(tmp_path / "index.db")
    index.digests(files)
    holder = sqlite3.connect(tmp_path / "index.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # as a writer that never lets go
    try:
        with pytest.raises(MusicrepError, match="index.db: database is locked") as raised:
            index.save()
        assert "\n" not in str(raised.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    index.save()  # the rows stayed buffered: saved once the lock is free
    assert len(ContentIndex(tmp_path / "index.db")) == 2


def test_segment_keys_depend_on_the_digest_and_the_times_only() -> None:
    digest = hashlib.sha256(os.urandom(16)).hexdigest()
    other = hashlib.sha256(os.urandom(16)).hexdigest()
    assert segment_key(digest, None, None) == digest
    assert segment_key(digest, 1, 2.5) == segment_key(digest, 1.0, 2.5) != segment_key(digest, 1.0, 2.0)
    assert segment_key(digest, 0.0, 1.0) == segment_key(digest, -0.0, 1.0)
    assert segment_key(digest, 1.0, None) != segment_key(digest, None, 1.0) != segment_key(other, None, 1.0)
    assert len({segment_key(digest, s, s + 1.0) for s in np.random.default_rng().random(100)}) == 100
    for bad in (float("nan"), float("inf"), -1.0):
        with pytest.raises(MusicrepError, match="start"):
            segment_key(digest, bad, 2.0)
