"""Planning a catalog at scale (issue 24 item 5): read a manifest, stat each file, look its digest
up in the content index; no audio is decoded.

Three plans of the same catalog, each in a fresh process so that its peak resident memory is its
own: the first (every file hashed), the second (nothing changed: stat and look-up only) and one
after touching 1 % of the files (those rehashed). The catalog is made here: ``count`` small files
(64 bytes each, distinct), 1,000 to a folder, and a manifest of their relative paths.

    pytest benchmarks/test_bench_catalog.py --benchmark-enable -s          # 10^4 and 10^6 files
    pytest benchmarks/test_bench_catalog.py --benchmark-enable -s -k 1e4   # the quick check

``MUSICREP_BENCH_CATALOG=20000,500000`` sets other counts. Making 10^6 files takes minutes and
about 4 GB of disk (one block each); they are deleted at the end, which on a filesystem mounted
with ``discard`` can take longer than making them (the 2026-12-03 run: over 20 minutes).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

COUNTS = [int(c) for c in os.environ.get("MUSICREP_BENCH_CATALOG", "10000,1000000").split(",")]
PER_FOLDER = 1000
RACY_SECONDS = 2.1  # files younger than the content index's racy window would be hashed again

PLAN = """
import itertools, json, sys, time
from musicrep.catalog import read_manifest
from musicrep.content import ContentIndex

def rss_mib(field="VmRSS"):  # VmHWM: this process's peak (ru_maxrss keeps the forking parent's)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024

start_rss = rss_mib()
started = time.perf_counter()
index = ContentIndex(sys.argv[2])
files = 0
entries = read_manifest(sys.argv[1])
while chunk := [entry.path for entry in itertools.islice(entries, 10_000)]:  # streamed, 10^4 at a time
    index.digests(chunk)
    files += len(chunk)
index.save()
print(json.dumps({"files": files, "rehashed": len(index.rehashed), "seconds": time.perf_counter() - started,
                  "start_rss_mib": start_rss, "end_rss_mib": rss_mib(),
                  "peak_rss_mib": rss_mib("VmHWM")}))
"""


def label(count: int) -> str:
    return f"1e{len(str(count)) - 1}" if str(count).strip("0") == "1" else str(count)


@pytest.fixture(scope="module", params=COUNTS, ids=label)
def catalog(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """(manifest, files, seconds to make them): ``count`` files of distinct bytes."""
    count = request.param
    root = tmp_path_factory.mktemp(f"catalog{label(count)}")
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    files = []
    with open(root / "manifest.txt", "w") as manifest:
        manifest.write(f"# {count} files\n")
        for i in range(count):
            folder = f"d{i // PER_FOLDER:05d}"
            if i % PER_FOLDER == 0:
                os.mkdir(root / folder)
            name = f"{folder}/f{i:07d}.wav"
            fd = os.open(root / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, b"%07d" % i + rng.bytes(57))
            os.close(fd)
            manifest.write(name + "\n")
            files.append(name)
    made = time.perf_counter() - started
    time.sleep(RACY_SECONDS)
    yield root / "manifest.txt", files, made
    shutil.rmtree(root)


def plan(manifest: Path, index: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", PLAN, str(manifest), str(index)], capture_output=True, text=True,
                         check=True, timeout=3600)
    return json.loads(out.stdout.splitlines()[-1])


def test_plan_catalog(benchmark, catalog, tmp_path: Path) -> None:
    manifest, files, made = catalog
    count = len(files)
    index = tmp_path / "content.db"
    touched = [manifest.parent / files[i] for i in
               np.random.default_rng(1).choice(count, size=count // 100, replace=False)]
    results: dict[str, dict] = {}

    def three_plans() -> None:
        if index.exists():
            index.unlink()
        results["first"] = plan(manifest, index)
        results["second"] = plan(manifest, index)
        for path in touched:
            os.utime(path)  # a new mtime and ctime, the same bytes
        results["touched 1%"] = plan(manifest, index)

    benchmark.pedantic(three_plans, rounds=1, iterations=1)
    assert [r["files"] for r in results.values()] == [count] * 3
    assert [r["rehashed"] for r in results.values()] == [count, 0, len(touched)]
    benchmark.extra_info.update({"files": count, "made_seconds": made, "index_mib": index.stat().st_size / 2**20,
                                 **{f"{phase} {key}": value for phase, r in results.items()
                                    for key, value in r.items()}})
    print(f"\n{count:,} files (made in {made:.0f} s), index {index.stat().st_size / 2**20:.0f} MiB")
    print("| plan | s | us/file | peak RSS MiB | RSS at start MiB | rehashed |")
    for phase, r in results.items():
        print(f"| {phase} | {r['seconds']:.1f} | {1e6 * r['seconds'] / count:.1f} | {r['peak_rss_mib']:.0f} | "
              f"{r['start_rss_mib']:.0f} | {r['rehashed']:,} |")
