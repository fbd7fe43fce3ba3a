"""Reading a catalog of audio to embed: a folder tree, a manifest (one path per line) or a CSV.

Each reader is a generator of ``CatalogEntry``: a million rows are read one at a time, never held
as a list. Everything here reads input someone else may have written, so each reader is bounded
(line length, columns, lines per CSV record, entries walked) and a bad file is one
``CatalogError`` line naming the file and the line.
"""
from __future__ import annotations

import csv
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator, Mapping

from musicrep.errors import MusicrepError

log = logging.getLogger("musicrep.catalog")

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
CSV_SUFFIXES = (".csv", ".tsv", ".tab")
MAX_ENTRIES = 10_000_000  # folder entries a walk looks at before it refuses
MAX_LINE = 64 * 1024  # bytes in one manifest or CSV line (PATH_MAX is 4096)
MAX_COLUMNS = 1024  # columns of a CSV catalog
MAX_RECORD_LINES = 64  # lines one CSV record may span (quoted newlines)
# where a walk never goes: kernel and device filesystems (reading /dev/zero never ends, /proc
# and /sys hold millions of synthetic entries)
SPECIAL_ROOTS = ("/proc", "/sys", "/dev")
SPECIAL_TYPES = frozenset({"proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs",
                           "securityfs", "pstore", "bpf", "configfs", "fusectl", "mqueue", "hugetlbfs",
                           "binfmt_misc", "autofs", "efivarfs", "rpc_pipefs", "nsfs"})


class CatalogError(MusicrepError):
    """A catalog that cannot be read: one line naming the file (and line) and what is wrong."""


@dataclass(frozen=True)
class CatalogEntry:
    """One audio file of a catalog.

    ``path`` is where to read it (a manifest's relative paths joined to the manifest's folder);
    ``name`` is as the catalog writes it (relative to the walked folder, or the manifest's text);
    ``line`` is its line in a manifest or CSV (0 for a folder walk); ``metadata`` is a CSV row's
    other columns.
    """

    path: str
    name: str
    line: int = 0
    metadata: Mapping[str, str] = field(default_factory=dict)


def read_catalog(source: str | Path, *, max_entries: int = MAX_ENTRIES) -> Iterator[CatalogEntry]:
    """The entries of ``source``: a folder (walked for audio files), a ``.csv``/``.tsv`` with a
    ``path`` column, or any other file as a manifest of one path per line."""
    source = Path(source)
    if source.is_dir():
        root = os.fspath(source)
        return (CatalogEntry(path, os.path.relpath(path, root)) for path in walk_audio(source, max_entries=max_entries))
    if source.suffix.lower() in CSV_SUFFIXES:
        return read_csv(source)
    return read_manifest(source)


# -- folders ----------------------------------------------------------------------------------


def walk_audio(root: str | Path, *, max_entries: int = MAX_ENTRIES,
               suffixes: tuple[str, ...] = AUDIO_SUFFIXES) -> Iterator[str]:
    """Paths of the audio files under ``root``, in sorted order (as ``sorted(root.rglob(...))``).

    Symlinked folders are followed, each real folder once (no cycles); folders on kernel and
    device filesystems (``/proc``, ``/sys``, ``/dev``) are skipped with a warning; unreadable
    folders below the root too. A root that is ``/`` or on such a filesystem, or a walk that
    looks at more than ``max_entries`` entries, is refused in one line.
    """
    root_text = os.fspath(root)
    real = os.path.realpath(root_text)
    if real == os.sep:
        raise CatalogError(f"{root_text}: refusing to walk the whole filesystem for audio; name the folder that "
                           "holds the audio")
    special = _special_filesystems()
    try:
        st = os.stat(root_text)
    except OSError as exc:
        raise CatalogError(f"{root_text}: cannot read the folder: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise CatalogError(f"{root_text}: not a folder")
    if _is_special(real, st, special):
        raise CatalogError(f"{root_text}: refusing to walk a kernel or device filesystem ({real}) for audio")
    walk = _Walk(max_entries, tuple(s.lower() for s in suffixes), special, root_text)
    walk.seen.add((st.st_dev, st.st_ino))
    return walk.folder(root_text, top=True)


class _Walk:
    def __init__(self, max_entries: int, suffixes: tuple[str, ...], special: tuple[frozenset, tuple],
                 root: str) -> None:
        self.max_entries, self.suffixes, self.special, self.root = max_entries, suffixes, special, root
        self.entries = 0
        self.seen: set[tuple[int, int]] = set()  # (device, inode) of each folder walked

    def folder(self, path: str, top: bool = False) -> Iterator[str]:
        try:
            with os.scandir(path) as it:
                entries = []
                for entry in it:
                    self.entries += 1
                    if self.entries > self.max_entries:
                        raise CatalogError(f"{self.root}: more than {self.max_entries:,} entries under this folder; "
                                           "walk refused (name a narrower folder, or use a manifest)")
                    entries.append(entry)
        except OSError as exc:
            if top:
                raise CatalogError(f"{path}: cannot read the folder: {exc.strerror or exc}") from None
            log.warning("%s: skipped, cannot read the folder: %s", path, exc.strerror or exc)
            return
        entries.sort(key=lambda e: e.name)
        for entry in entries:
            try:
                is_dir = entry.is_dir()  # follows a symlink
                is_file = not is_dir and entry.is_file()
            except OSError:
                continue
            if is_file:
                if _suffix(entry.name) in self.suffixes:
                    yield entry.path
            elif is_dir:
                try:
                    st = entry.stat()
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) in self.seen:
                    continue  # a cycle, or a folder reached twice through links
                self.seen.add((st.st_dev, st.st_ino))
                target = os.path.realpath(entry.path) if entry.is_symlink() else entry.path
                if target == os.sep:
                    log.warning("%s: skipped, a link to the whole filesystem", entry.path)
                elif _is_special(target, st, self.special):
                    log.warning("%s: skipped, a kernel or device filesystem", entry.path)
                else:
                    yield from self.folder(entry.path)


def _suffix(name: str) -> str:
    """The lower-cased suffix as ``PurePath.suffix`` has it (``..wav`` has one, ``.wav`` none)."""
    dot = name.rfind(".")
    return name[dot:].lower() if 0 < dot < len(name) - 1 else ""


def _special_filesystems() -> tuple[frozenset, tuple]:
    """The devices of mounted kernel and device filesystems, and the folders that hold them."""
    mounts = list(SPECIAL_ROOTS)
    try:
        with open("/proc/self/mounts", "rb") as f:
            for line in f.read(1 << 20).splitlines():
                parts = line.split()
                if len(parts) >= 3:
                    point = _unescape_mount(parts[1].decode("utf-8", "surrogateescape"))
                    if parts[2].decode("ascii", "replace") in SPECIAL_TYPES or _under(point, SPECIAL_ROOTS):
                        mounts.append(point)
    except OSError:
        pass  # no /proc (another OS): the folder names still hold
    devices = set()
    for point in mounts:
        try:
            devices.add(os.stat(point).st_dev)
        except OSError:
            pass
    return frozenset(devices), SPECIAL_ROOTS


def _unescape_mount(text: str) -> str:
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        text = text.replace(code, char)
    return text


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r + "/") for r in roots)


def _is_special(real: str, st: os.stat_result, special: tuple[frozenset, tuple]) -> bool:
    devices, roots = special
    return st.st_dev in devices or _under(os.path.abspath(real), roots)


# -- manifests --------------------------------------------------------------------------------


def read_manifest(path: str | Path) -> Iterator[CatalogEntry]:
    """One audio path per line; blank lines and ``#`` comments skipped; relative paths are
    relative to the manifest's folder. UTF-8, lines of at most ``MAX_LINE`` bytes, no NUL."""
    path = Path(path)
    folder = os.path.dirname(os.path.abspath(path))
    with _open(path) as f:
        for number, text in _lines(f, path):
            name = text.strip()
            if not name or name.startswith("#"):
                continue
            yield CatalogEntry(os.path.join(folder, name), name, number)


def _open(path: Path) -> BinaryIO:
    """``path`` opened for reading if it is a regular file (non-blocking: a FIFO put in its
    place cannot hang the run)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read the catalog: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CatalogError(f"{path}: not a regular file")
    return open(fd, "rb")


def _lines(f: BinaryIO, path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text without its line end) of each line, checked: bounded, UTF-8, no NUL."""
    number = 0
    while True:
        raw = f.readline(MAX_LINE + 2)
        if not raw:
            return
        number += 1
        if len(raw.rstrip(b"\r\n")) > MAX_LINE:
            raise CatalogError(f"{path}: line {number} is longer than {MAX_LINE:,} bytes")
        if b"\0" in raw:
            raise CatalogError(f"{path}: line {number} holds a NUL byte")
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CatalogError(f"{path}: line {number} is not UTF-8 text (byte {exc.start + 1})") from None
        yield number, text.rstrip("\r\n")


# -- CSV --------------------------------------------------------------------------------------


def read_csv(path: str | Path, *, path_column: str = "path") -> Iterator[CatalogEntry]:
    """A CSV (tab-separated for ``.tsv``/``.tab``) with a header row naming a ``path`` column;
    the row's other columns become the entry's metadata. Relative paths are relative to the CSV's
    folder; blank rows are skipped."""
    path = Path(path)
    folder = os.path.dirname(os.path.abspath(path))
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    with _open(path) as f:
        lines = _RecordLines(_lines(f, path), path)
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
        header = _next_row(reader, lines, path)
        if header is None:
            raise CatalogError(f"{path}: empty; expected a header row with a {path_column!r} column")
        header = [name.strip() for name in header]
        if path_column not in header:
            shown = ", ".join(repr(h[:40]) for h in header[:10]) + (", ..." if len(header) > 10 else "")
            raise CatalogError(f"{path}: line {lines.first}: no column {path_column!r} in the header ({shown})")
        where = header.index(path_column)
        while (row := _next_row(reader, lines, path)) is not None:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > len(header):
                raise CatalogError(f"{path}: line {lines.first}: {len(row)} fields, the header has {len(header)}")
            name = row[where].strip() if where < len(row) else ""
            if not name:
                raise CatalogError(f"{path}: line {lines.first}: empty {path_column!r}")
            metadata = {column: (row[i] if i < len(row) else "") for i, column in enumerate(header) if i != where}
            yield CatalogEntry(os.path.join(folder, name), name, lines.first, metadata)


class _RecordLines:
    """Feeds checked lines to ``csv.reader``, counting the lines of the record being read, so a
    record can span only ``MAX_RECORD_LINES`` lines (quoted newlines)."""

    def __init__(self, lines: Iterator[tuple[int, str]], path: Path) -> None:
        self.lines, self.path = lines, path
        self.first = 0  # the line the current record started on
        self.count = 0  # lines of the current record so far

    def __iter__(self) -> "_RecordLines":
        return self

    def __next__(self) -> str:
        number, text = next(self.lines)
        if self.count == 0:
            self.first = number
        self.count += 1
        if self.count > MAX_RECORD_LINES:
            raise CatalogError(f"{self.path}: line {self.first}: a record spans more than {MAX_RECORD_LINES} lines "
                               "(an unclosed quote?)")
        return text + "\n"


def _next_row(reader: "csv._reader", lines: _RecordLines, path: Path) -> list[str] | None:
    lines.count = 0
    try:
        row = next(reader)
    except StopIteration:
        return None
    except csv.Error as exc:  # an unclosed quote at the end, a field over csv.field_size_limit()
        raise CatalogError(f"{path}: line {lines.first or 1}: {exc}") from None
    if len(row) > MAX_COLUMNS:
        raise CatalogError(f"{path}: line {lines.first}: {len(row):,} fields; a catalog has at most {MAX_COLUMNS}")
    return row
