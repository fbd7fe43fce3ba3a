"""The content index: the sha256 of each audio file's bytes, cached under a stat signature.

A catalog is checked on every run; reading every file each time would cost as much as a full
copy of the catalog. As git's index does, each digest is kept beside the file's stat signature
(size, mtime_ns, ctime_ns, inode): a file whose signature is unchanged is not read again, a new or
changed one is (re)hashed. A file replaced by another with the same size and mtime still gets a
new inode or ctime, so it is rehashed.

On disk the index is one SQLite table keyed by path (the standard library's ``sqlite3``): a lookup
is a B-tree search, so a million rows are never held in memory, and each commit is atomic (SQLite's
rollback journal: a process killed mid-save leaves the last committed index, the hot journal is
rolled back on the next open). Whole-file rewrites through ``musicrep.atomic`` would copy every row
on every save; the journal gives the same guarantee (old or new, never half) at the cost of the
changed rows only. The index is a cache, so damage is never trusted and never fatal: a file that is
not a SQLite database, has another schema, or fails while read is set aside with one warning line
and the index starts empty; a row whose checksum does not match its fields is hashed again.

Keys are absolute paths as ``os.path.abspath`` makes them (normalised, symlinks *not* resolved: the
bytes hashed are those the path reads, and a symlink pointed elsewhere reaches another inode).
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import sqlite3
import stat
import time
import zlib
from pathlib import Path
from typing import Callable, Iterable, NamedTuple, Sequence, TypeVar

from musicrep.errors import MusicrepError

log = logging.getLogger("musicrep.content")
T = TypeVar("T")

CHUNK = 1 << 20  # bytes read at a time while hashing
SCHEMA_VERSION = 1
SCHEMA = ("CREATE TABLE files (path BLOB PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, "
          "ctime_ns INTEGER NOT NULL, inode INTEGER NOT NULL, hashed_ns INTEGER NOT NULL, "
          "digest TEXT NOT NULL, check_sum INTEGER NOT NULL) WITHOUT ROWID")
# a file modified this soon after it was hashed may keep the same mtime (coarse timestamps: FAT and
# SMB keep 2 s); such a row is "racy", as git calls it, and its file is hashed again
RACY_NS = 2_000_000_000
LOOKUP_BATCH = 500  # paths looked up in one query by ``digests``
COMMIT_EVERY = 10_000  # rows hashed between commits while a long ``digests`` runs
LOCK_TIMEOUT = 60.0  # seconds to wait for another process's write (ranks sharing an index)
RETRIES = 3  # reads of a file that changes while it is hashed, before it is refused


class UnstableFileError(MusicrepError, OSError):
    """A file that changed each time it was hashed, or is not a regular file (an ``OSError`` too,
    so a caller that skips unreadable files skips it as well)."""


class Signature(NamedTuple):
    """What ``stat`` says about a file's bytes without reading them."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> "Signature":
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def hash_file(path: str) -> tuple[str, Signature]:
    """The hex sha256 of the regular file at ``path``, read in 1 MiB chunks, with the signature of
    the bytes read (taken from the open file, before and after: equal or the file is read again).

    Opened non-blocking so that a FIFO put under the name cannot hang the run; anything but a
    regular file (a FIFO, a device, a folder) is refused.
    """
    for _ in range(RETRIES):
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                raise UnstableFileError(f"{path}: not a regular file")
            digest = hashlib.sha256()
            buffer = bytearray(CHUNK)
            view = memoryview(buffer)
            with open(fd, "rb", buffering=0, closefd=False) as f:
                while n := f.readinto(buffer):
                    digest.update(view[:n])
            after = os.fstat(fd)
        finally:
            os.close(fd)
        if Signature.of(before) == Signature.of(after):
            return digest.hexdigest(), Signature.of(after)
    raise UnstableFileError(f"{path}: the file changed while it was read ({RETRIES} tries); not hashed")


def segment_key(digest: str, start: float | None, end: float | None) -> str:
    """The key of a segment (``start``/``end`` seconds) of the file with ``digest``.

    The same bytes cut at the same times decode to the same samples, so the key is a hash of the
    file's digest and the times (as floats: 1 and 1.0 are one key) and no audio is decoded to make
    it. A whole file (both ``None``) keeps its digest as its key.
    """
    if start is None and end is None:
        return digest
    times = []
    for name, value in (("start", start), ("end", end)):
        if value is None:
            times.append("")
            continue
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise MusicrepError(f"segment of {digest[:16]}: {name} must be a finite number >= 0, got {value}")
        times.append(repr(value + 0.0))  # -0.0 -> 0.0
    return hashlib.sha256(f"{digest}\0{times[0]}\0{times[1]}".encode()).hexdigest()


def _row_check(path: str, signature: Signature, hashed_ns: int, digest: str) -> int:
    """A checksum over a row's fields: a row damaged on disk does not vouch for a file."""
    text = f"{path}\0{signature.size}\0{signature.mtime_ns}\0{signature.ctime_ns}\0{signature.inode}\0" \
           f"{hashed_ns}\0{digest}"
    return zlib.crc32(text.encode("utf-8", "surrogateescape"))


class ContentIndex:
    """Digests of files by path, each reread only when its stat signature says it changed.

    Rows hashed are buffered (at most ``COMMIT_EVERY``) and written in one short transaction, so
    processes sharing the file (ranks under ``torchrun``) hold its write lock only while writing.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.rehashed: list[str] = []  # paths (re)hashed since loading: new, changed or racy
        self._buffer: dict[str, tuple] = {}  # rows hashed, not yet written
        self._warned_row = False
        self._on_disk = False  # set by _open or the first save
        self._db = self._open()

    # -- the database ---------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        if self.path is None or not self.path.exists():  # a new file is made by the first save
            return self._create(":memory:")
        try:
            db = self._open_existing()
            self._on_disk = True
            return db
        except (sqlite3.DatabaseError, UnicodeDecodeError, _Damaged) as exc:  # a message of damaged bytes
            if _environmental(exc):
                raise MusicrepError(f"{self.path}: cannot open the content index: {_line(exc)}") from None
            return self._discard(exc)

    def _create(self, where: str | Path) -> sqlite3.Connection:
        if where != ":memory:":
            Path(where).parent.mkdir(parents=True, exist_ok=True)
            # made here with the permissions the umask gives, as open() would (SQLite's own 0644
            # ignores a umask that grants more); SQLite takes an empty file as a new database
            os.close(os.open(where, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666))
        db = self._connect(where)
        with db:
            db.execute(SCHEMA)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return db

    def _connect(self, where: str | Path) -> sqlite3.Connection:
        db = sqlite3.connect(where, timeout=LOCK_TIMEOUT, isolation_level=None, check_same_thread=False)
        db.text_factory = bytes  # decoded here, where damage is caught (a path need not be UTF-8)
        db.execute("PRAGMA trusted_schema = OFF")  # the file is data: no functions from its schema
        db.execute("PRAGMA cache_size = -8192")  # 8 MiB of pages, whatever the catalog's size
        return db

    def _open_existing(self) -> sqlite3.Connection:
        assert self.path is not None
        if not self.path.is_file():
            raise MusicrepError(f"{self.path}: the content index is not a file")
        db = self._connect(self.path)
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = db.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
            if version != SCHEMA_VERSION or tables != [(b"table", b"files", SCHEMA.encode())]:
                raise _Damaged(f"not a musicrep content index (schema version {version}, {len(tables)} objects)")
        except BaseException:
            db.close()
            raise
        return db

    def _discard(self, reason: BaseException) -> sqlite3.Connection:
        """Warn once, move the damaged file aside (kept for a post-mortem, replacing an older one)
        and start empty."""
        assert self.path is not None
        aside = self.path.with_name(self.path.name + ".damaged")
        log.warning("%s: damaged content index (%s); set aside as %s, its files are hashed again",
                    self.path, _line(reason), aside.name)
        try:
            for suffix in ("", "-journal", "-wal", "-shm"):
                damaged = self.path.with_name(self.path.name + suffix)
                if damaged.is_file() and not damaged.is_symlink():
                    os.replace(damaged, aside.with_name(aside.name + suffix))
            return self._create(self.path)
        except (OSError, sqlite3.Error) as exc:
            raise MusicrepError(f"{self.path}: cannot replace the damaged content index: {_line(exc)}") from None

    def _run(self, action: Callable[[sqlite3.Connection], T], fallback: T) -> T:
        """``action(db)``; a damaged file is discarded (``fallback`` returned), any other database
        failure (a full disk, a lock held past the timeout) is one line naming the file."""
        try:
            return action(self._db)
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            if _environmental(exc):
                raise MusicrepError(f"{self.path or 'content index'}: {_line(exc)}") from None
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = self._create(":memory:") if self.path is None else self._discard(exc)
            return fallback

    # -- lookups --------------------------------------------------------------------------------

    def _rows(self, keys: list[str]) -> dict[str, tuple]:
        """The stored rows of ``keys`` that have one (buffered rows first), in one query."""
        found = {key: self._buffer[key] for key in keys if key in self._buffer}
        wanted = {os.fsencode(key): key for key in keys if key not in found}
        if wanted:
            sql = f"SELECT * FROM files WHERE path IN ({','.join('?' * len(wanted))})"
            for row in self._run(lambda db: db.execute(sql, list(wanted)).fetchall(), []):
                if row[0] in wanted:
                    found[wanted[row[0]]] = row
        return found

    def _vouched(self, key: str, row: tuple | None, signature: Signature) -> str | None:
        """The digest ``row`` holds, if the row is intact, its signature is ``signature`` and it
        is not racy; else None (the file is to be read)."""
        if row is None:
            return None
        _, size, mtime_ns, ctime_ns, inode, hashed_ns, digest, check = row
        try:  # a damaged file can hold any type in any column
            stored = Signature(int(size), int(mtime_ns), int(ctime_ns), int(inode))
            hashed_ns = int(hashed_ns)
            digest = digest.decode("ascii") if isinstance(digest, bytes) else digest
            valid = check == _row_check(key, stored, hashed_ns, digest)
        except (TypeError, ValueError, OverflowError, AttributeError):
            valid = False
        if not valid:
            if not self._warned_row:
                log.warning("%s: damaged row for %s in the content index; such files are hashed again",
                            self.path, key)
                self._warned_row = True
            return None
        if stored != signature or stored.mtime_ns > hashed_ns - RACY_NS:
            return None
        return digest

    def _hash(self, key: str) -> str:
        hashed_ns = time.time_ns()
        digest, signature = hash_file(key)
        self._buffer[key] = (os.fsencode(key), *signature, hashed_ns, digest,
                             _row_check(key, signature, hashed_ns, digest))
        self.rehashed.append(key)
        if len(self._buffer) >= COMMIT_EVERY:
            self._write()
        return digest

    def _batch(self, paths: Sequence[str | Path]) -> list[str]:
        keys = [os.path.abspath(os.fspath(path)) for path in paths]
        signatures = [Signature.of(os.stat(key)) for key in keys]
        rows = self._rows(keys)
        return [self._vouched(key, rows.get(key), signature) or self._hash(key)
                for key, signature in zip(keys, signatures)]

    def digest(self, path: str | Path) -> str:
        """The hex sha256 of the bytes of the file at ``path`` (``OSError`` if it cannot be read),
        from the index when its stat signature is unchanged, else read and recorded."""
        return self._batch([path])[0]

    def digests(self, paths: Iterable[str | Path], *, progress: bool = False) -> list[str]:
        """``digest`` of each path, in order, looked up ``LOOKUP_BATCH`` at a time (one query
        each: several times faster than one ``digest`` per path); with ``progress``, a bar (or
        log lines) on stderr."""
        from musicrep.progress import progress_bar

        paths = paths if isinstance(paths, (list, tuple)) else list(paths)
        bar = progress_bar(total=len(paths), desc="content index", unit="file", disable=not progress)
        out: list[str] = []
        try:
            for start in range(0, len(paths), LOOKUP_BATCH):
                chunk = paths[start:start + LOOKUP_BATCH]
                out.extend(self._batch(chunk))
                bar.update(len(chunk))
        finally:
            bar.close()
        return out

    def _write(self) -> None:
        """Write the buffered rows in one transaction; kept buffered if that fails (a lock held
        past the timeout), so the next save tries again."""
        rows = list(self._buffer.values())

        def write(db: sqlite3.Connection) -> None:
            with db:  # all of these rows or none
                db.execute("BEGIN IMMEDIATE")
                db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)

        self._run(write, None)
        self._buffer.clear()

    def save(self) -> None:
        """Write what was hashed since the last save in one atomic SQLite transaction (an index in
        memory keeps it in memory). The file of a new index is made here, not when it is opened: a
        dry run, or a check before a run folder exists, leaves nothing behind."""
        if self._buffer:
            self._write()
        if self.path is not None and not self._on_disk:
            self._persist()

    def _persist(self) -> None:
        """Make the index file and copy every row held in memory into it, in one transaction."""
        assert self.path is not None
        rows = self._run(lambda db: db.execute("SELECT * FROM files").fetchall(), [])
        memory, self._db = self._db, self._open_file()  # another process (a rank) may have made it
        self._on_disk = True
        memory.close()
        self._buffer.update({row[0].decode("utf-8", "surrogateescape"): row for row in rows})
        self._write()

    def _open_file(self) -> sqlite3.Connection:
        """The index file, made if missing; a damaged one set aside; a locked or unwritable one is
        one line naming it."""
        assert self.path is not None
        try:
            if self.path.exists():
                return self._open_existing()
            return self._create(self.path)
        except (sqlite3.DatabaseError, UnicodeDecodeError, _Damaged) as exc:
            if _environmental(exc):
                raise MusicrepError(f"{self.path}: {_line(exc)}") from None
            return self._discard(exc)
        except OSError as exc:
            raise MusicrepError(f"{self.path}: cannot write the content index: {_line(exc)}") from None

    def __len__(self) -> int:
        """The number of files indexed (hashed rows included; the file of a new index is still
        made by ``save`` alone)."""
        if self._buffer:
            self._write()
        return self._run(lambda db: int(db.execute("SELECT count(*) FROM files").fetchone()[0]), 0)

    def close(self) -> None:
        """Save, then release the database file."""
        self.save()
        self._db.close()

    def __enter__(self) -> "ContentIndex":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Damaged(Exception):
    """An index file that opened but is not ours (another schema, another version)."""


# SQLite's primary result codes that say something about the machine, not the file: permission,
# busy, locked, out of memory, read-only, I/O error, full, cannot open. Any other failure (corrupt,
# not a database, unsupported format, a missing table) is damage.
ENVIRONMENTAL_CODES = frozenset({3, 5, 6, 7, 8, 10, 13, 14})


def _environmental(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in ENVIRONMENTAL_CODES


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
