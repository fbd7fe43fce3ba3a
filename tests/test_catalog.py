"""Catalog readers: folder walks (bounded, no link cycles, no kernel filesystems), manifests, CSVs."""
from __future__ import annotations

import itertools
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from musicrep import catalog
from musicrep.catalog import (AUDIO_SUFFIXES, CatalogEntry, CatalogError, read_catalog, read_csv, read_manifest,
                              walk_audio)
from musicrep.errors import MusicrepError
from musicrep.pipeline.pretrain import AudioFolder


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng()


def random_tree(root: Path, rng: np.random.Generator, files: int = 60) -> list[Path]:
    """Files with random names at random depths, audio and not, suffixes in either case."""
    suffixes = [*AUDIO_SUFFIXES, ".WAV", ".Flac", ".txt", ".json", ""]
    made = []
    for _ in range(files):
        depth = int(rng.integers(0, 4))
        parts = ["".join(rng.choice(list("ab.-_x"), size=int(rng.integers(1, 4)))) + "d" for _ in range(depth)]
        name = "".join(rng.choice(list("ab.-_ 1"), size=int(rng.integers(1, 5)))) + str(rng.choice(suffixes))
        if name.strip(".") == "":
            continue  # "." and ".." are not file names
        path = root.joinpath(*parts, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        made.append(path)
    return sorted(set(made))


def one_line(exc: pytest.ExceptionInfo, *needles: str) -> str:
    text = str(exc.value)
    assert isinstance(exc.value, MusicrepError) and "\n" not in text, text
    for needle in needles:
        assert needle in text, text
    return text


# -- walks ------------------------------------------------------------------------------------


def test_walk_finds_the_audio_files_rglob_finds_in_the_same_order(tmp_path: Path, rng) -> None:
    random_tree(tmp_path, rng)
    expected = sorted(p for p in tmp_path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    assert [Path(p) for p in walk_audio(tmp_path)] == expected
    assert len(expected) > 10


def test_walk_follows_links_to_folders_once_and_never_round_a_cycle(tmp_path: Path) -> None:
    (tmp_path / "real" / "deep").mkdir(parents=True)
    (tmp_path / "real" / "deep" / "a.wav").write_bytes(b"")
    (tmp_path / "real" / "deep" / "back").symlink_to(tmp_path / "real")  # a cycle to the root
    (tmp_path / "real" / "deep" / "up").symlink_to("..")  # and one to its parent
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "b.flac").write_bytes(b"")
    (tmp_path / "real" / "shared").symlink_to(tmp_path / "outside")
    found = list(walk_audio(tmp_path / "real"))
    assert found == [str(tmp_path / "real" / "deep" / "a.wav"), str(tmp_path / "real" / "shared" / "b.flac")]


@pytest.mark.parametrize("root", ["/", "/proc", "/sys", "/dev", "/proc/self"])
def test_walk_refuses_the_whole_filesystem_and_kernel_filesystems_at_once(root: str) -> None:
    with pytest.raises(CatalogError) as raised:
        walk_audio(root)  # refused when called, before anything is read
    one_line(raised, root, "refusing to walk")


def test_walk_refuses_a_link_to_the_root_given_as_its_root(tmp_path: Path) -> None:
    (tmp_path / "everything").symlink_to("/")
    with pytest.raises(CatalogError) as raised:
        walk_audio(tmp_path / "everything")
    one_line(raised, "everything", "whole filesystem")


def test_walk_skips_links_into_kernel_filesystems_and_to_the_root(tmp_path: Path, caplog) -> None:
    (tmp_path / "a.wav").write_bytes(b"")
    for name, target in (("p", "/proc"), ("s", "/sys/class"), ("d", "/dev"), ("r", "/")):
        (tmp_path / name).symlink_to(target)
    with caplog.at_level(logging.WARNING, logger="musicrep.catalog"):
        assert list(walk_audio(tmp_path)) == [str(tmp_path / "a.wav")]
    assert sorted(r.getMessage().split(":")[0] for r in caplog.records) == \
        [str(tmp_path / name) for name in ("d", "p", "r", "s")]


def test_walk_refuses_more_entries_than_its_limit(tmp_path: Path, rng) -> None:
    made = random_tree(tmp_path, rng, files=30)
    entries = sum(1 for _ in tmp_path.rglob("*"))
    assert len(list(walk_audio(tmp_path, max_entries=entries))) == \
        sum(p.suffix.lower() in AUDIO_SUFFIXES for p in made)
    with pytest.raises(CatalogError) as raised:
        list(walk_audio(tmp_path, max_entries=entries - 1))
    one_line(raised, str(tmp_path), f"more than {entries - 1:,} entries")


def test_walk_of_a_file_or_missing_folder_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a.wav").write_bytes(b"")
    for root, needle in ((tmp_path / "a.wav", "not a folder"), (tmp_path / "nope", "cannot read")):
        with pytest.raises(CatalogError) as raised:
            walk_audio(root)
        one_line(raised, str(root), needle)


def test_audio_folder_walks_with_the_bounded_walk(tmp_path: Path, rng) -> None:
    made = random_tree(tmp_path, rng)
    (tmp_path / "loop").symlink_to(tmp_path)  # the old rglob walk skipped links; the walk must not loop
    folder = AudioFolder(tmp_path)
    audio = sorted(p for p in made if p.suffix.lower() in AUDIO_SUFFIXES)
    assert [item.path for item in folder.items()] == [str(p) for p in audio]
    assert [item.id for item in folder.items()] == [str(p.relative_to(tmp_path)) for p in audio]
    with pytest.raises(CatalogError) as raised:
        AudioFolder(Path("/"))
    one_line(raised, "whole filesystem")


# -- manifests --------------------------------------------------------------------------------


def test_manifest_skips_comments_and_blanks_and_joins_relative_paths(tmp_path: Path, rng) -> None:
    names = [f"d{i}/{rng.integers(1 << 30)} ü.wav" for i in range(5)] + ["/abs/x.flac"]
    lines = ["\ufeff# a catalog", "", *names[:3], "   ", "  # indented comment", *names[3:]]
    manifest = tmp_path / "list.txt"
    manifest.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    entries = list(read_manifest(manifest))
    assert [e.name for e in entries] == names
    assert [e.path for e in entries] == [str(tmp_path / n) for n in names[:-1]] + ["/abs/x.flac"]
    assert [e.line for e in entries] == [3, 4, 5, 8, 9, 10]
    assert list(read_catalog(manifest)) == entries


def test_manifest_is_read_as_a_stream(tmp_path: Path) -> None:
    """The first rows come before a bad line far down is read: no list of a million rows."""
    manifest = tmp_path / "big.txt"
    with open(manifest, "wb") as f:
        f.write(b"".join(b"clip%d.wav\n" % i for i in range(100_000)))
        f.write(b"\xff\xfe bad\n")
    first = list(itertools.islice(read_manifest(manifest), 3))
    assert [e.name for e in first] == ["clip0.wav", "clip1.wav", "clip2.wav"]
    with pytest.raises(CatalogError) as raised:
        sum(1 for _ in read_manifest(manifest))
    one_line(raised, str(manifest), "line 100001 is not UTF-8")


@pytest.mark.parametrize("content, needle", [
    (b"a.wav\nb\xe9.wav\n", "line 2 is not UTF-8"),
    (b"a.wav\n\nb\0.wav\n", "line 3 holds a NUL byte"),
    (b"a.wav\n" + b"x" * (catalog.MAX_LINE + 1) + b"\n", "line 2 is longer than"),
    (b"x" * (10 * catalog.MAX_LINE), "line 1 is longer than"),  # no newline at all
])
def test_bad_manifests_are_one_line_naming_the_file_and_line(tmp_path: Path, content: bytes, needle: str) -> None:
    manifest = tmp_path / "list.txt"
    manifest.write_bytes(content)
    with pytest.raises(CatalogError) as raised:
        list(read_manifest(manifest))
    one_line(raised, str(manifest), needle)


def test_a_missing_manifest_or_a_folder_manifest_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(CatalogError) as raised:
        list(read_manifest(tmp_path / "missing.txt"))
    one_line(raised, "missing.txt", "cannot read")
    os.mkfifo(tmp_path / "pipe.txt")
    with pytest.raises(CatalogError) as raised:
        list(read_catalog(tmp_path / "pipe.txt"))
    one_line(raised, "pipe.txt")


# -- CSV --------------------------------------------------------------------------------------


def test_csv_keeps_other_columns_as_metadata(tmp_path: Path, rng) -> None:
    labels = [str(rng.integers(1000)) for _ in range(4)]
    rows = ["artist,path,label", *(f'"A, {i}",c{i}.wav,{labels[i]}' for i in range(3)), "", f'x,"/abs/q\nr.wav",{labels[3]}']
    table = tmp_path / "cat.csv"
    table.write_text("\n".join(rows) + "\n")
    entries = list(read_catalog(table))
    assert entries[:3] == [CatalogEntry(str(tmp_path / f"c{i}.wav"), f"c{i}.wav", i + 2,
                                        {"artist": f"A, {i}", "label": labels[i]}) for i in range(3)]
    assert entries[3] == CatalogEntry("/abs/q\nr.wav", "/abs/q\nr.wav", 6, {"artist": "x", "label": labels[3]})


def test_tsv_and_short_rows(tmp_path: Path) -> None:
    table = tmp_path / "cat.tsv"
    table.write_text("path\tsplit\tlabel\na, b.wav\ttrain\n")
    assert list(read_csv(table)) == [CatalogEntry(str(tmp_path / "a, b.wav"), "a, b.wav", 2,
                                                  {"split": "train", "label": ""})]


@pytest.mark.parametrize("content, needle", [
    (b"file,label\na.wav,x\n", "line 1: no column 'path'"),
    (b"", "empty"),
    (b"path,label\na.wav,x\nb.wav,y,z\n", "line 3: 3 fields, the header has 2"),
    (b"path,label\n ,x\n", "line 2: empty 'path'"),
    (b"path\n\"a.wav\n", "line 2"),
    (b"path,label\n\"a" + b"\n" * 200 + b"\",x\n", "line 2: a record spans more than"),
    (b"path\n\xff.wav\n", "line 2 is not UTF-8"),
    (b"path\na\0.wav\n", "line 2 holds a NUL byte"),
    (b"path," + b",".join(b"c%d" % i for i in range(10 ** 6)) + b"\n", "line 1 is longer than"),
    (b"path" + b",c" * (catalog.MAX_COLUMNS + 5) + b"\n", f"line 1: {catalog.MAX_COLUMNS + 6:,} fields"),
])
def test_bad_csv_catalogs_are_one_line_naming_the_file_and_line(tmp_path: Path, content: bytes, needle: str) -> None:
    table = tmp_path / "cat.csv"
    table.write_bytes(content)
    with pytest.raises(CatalogError) as raised:
        list(read_catalog(table))
    one_line(raised, str(table), needle)


def test_read_catalog_walks_a_folder_with_names_relative_to_it(tmp_path: Path, rng) -> None:
    made = random_tree(tmp_path, rng)
    audio = sorted(p for p in made if p.suffix.lower() in AUDIO_SUFFIXES)
    assert list(read_catalog(tmp_path)) == [CatalogEntry(str(p), str(p.relative_to(tmp_path))) for p in audio]
