"""The resource bombs of issue 25 (item 4), each run in a child process whose address space is
capped (``resource.setrlimit(RLIMIT_AS)``) at what it uses after importing musicrep plus 1 GiB. Each
bomb would take far more than that if it were decoded, inflated or allocated; each must end in ONE
musicrep error line naming its file (or its key), never a MemoryError, a traceback or a killed child.

- a 400 KB WAV at 1 Hz (12.8 GB of float32 once resampled to 16 kHz);
- a checkpoint whose zip entry inflates to 1 GiB from ~1 MB (deflated zeros);
- a HEAR vocabulary of 10^6 labels (``np.eye(n)`` per track was a 3.6 TiB request);
- ``[embed] num_workers = 1000`` (872 processes and 9 GB before);
- an encoder of 10^10 parameters within every range of its config (40 GB of weights);
- ``musicrep.load_model`` of an audio file.
"""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

CHILD = textwrap.dedent('''
    import resource, sys, traceback
    from pathlib import Path
    import numpy, torch, musicrep, musicrep.audio, musicrep.checkpoint, musicrep.plugins.tasks
    from musicrep.cli import main
    from musicrep.errors import MusicrepError

    peak = int(open("/proc/self/status").read().split("VmPeak:")[1].split()[0]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (peak + 2**30, resource.getrlimit(resource.RLIMIT_AS)[1]))
    root = Path(sys.argv[1])

    def bomb(name, call):
        try:
            call()
            print(f"{name}\\tRETURNED", flush=True)
        except MusicrepError as exc:
            print(f"{name}\\t" + " | ".join(str(exc).splitlines()), flush=True)
        except BaseException as exc:
            print(f"{name}\\tESCAPED {type(exc).__name__}: " + " | ".join(str(exc).splitlines())[:300], flush=True)

    def hear_task():
        task = musicrep.get_component("task", "hear", path=str(root / "hear"))
        task.targets(task.items())

    def cli_run(toml):
        code = main(["run", "--dry-run", str(toml)])
        if code != 0:
            raise MusicrepError("see stderr")

    bomb("audio", lambda: musicrep.audio.load(root / "1hz.wav", 16000))
    bomb("checkpoint", lambda: musicrep.checkpoint.read_checkpoint(root / "bomb.pt"))
    bomb("vocabulary", hear_task)
    bomb("encoder", lambda: musicrep.get_component("encoder", "fcn", channels=[8192] * 16, dim=8))
    bomb("load_model", lambda: musicrep.load_model(root / "1hz.wav"))
    bomb("workers", lambda: cli_run(root / "workers.toml"))
''')

WORKERS = """
[run]
name = "bomb"
device = "cpu"
[tasks.t]
type = "synth"
n_train = 6
n_valid = 3
n_test = 3
[models.m]
frontend = { type = "mel", n_fft = 256, hop_length = 128, n_mels = 8 }
encoder = { type = "fcn", channels = [2], dim = 4 }
[embed]
num_workers = 1000
"""


def one_hz_wav(path: Path, size: int = 400_000) -> None:
    fmt = struct.pack("<HHIIHH", 1, 1, 1, 2, 2, 16)
    path.write_bytes(b"RIFF" + struct.pack("<I", 36 + size) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
                     + b"data" + struct.pack("<I", size) + bytes(size))


def deflate_bomb(path: Path, inflated: int = 2**30) -> None:
    """A torch-shaped zip whose one data entry is ``inflated`` zero bytes, deflated (~1 MB)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("bomb/data.pkl", b"\x80\x02}q\x00.")  # an empty dict, pickled
        archive.writestr("bomb/byteorder", b"little")
        with archive.open("bomb/data/0", "w", force_zip64=True) as entry:
            zeros = bytes(1 << 24)
            for _ in range(inflated >> 24):
                entry.write(zeros)


def hear_folder(root: Path, labels: int = 10**6) -> None:
    root.mkdir()
    (root / "task_metadata.json").write_text(json.dumps({"task_name": "bomb", "prediction_type": "multilabel"}))
    (root / "labelvocabulary.csv").write_text("idx,label\n" + "".join(f"{i},l{i}\n" for i in range(labels)))
    for split in ("train", "valid", "test"):
        (root / f"{split}.json").write_text(json.dumps({f"{split}.wav": ["l0", f"l{labels - 1}"]}))
    (root / "16000").mkdir()


@pytest.mark.slow
def test_every_bomb_is_one_musicrep_line_under_a_memory_cap(tmp_path: Path) -> None:
    one_hz_wav(tmp_path / "1hz.wav")
    deflate_bomb(tmp_path / "bomb.pt")
    assert (tmp_path / "bomb.pt").stat().st_size < 8 << 20
    hear_folder(tmp_path / "hear")
    (tmp_path / "workers.toml").write_text(WORKERS)
    child = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True, text=True, timeout=300)
    results = dict(line.split("\t", 1) for line in child.stdout.splitlines() if "\t" in line)
    assert child.returncode == 0, child.stdout + child.stderr
    assert set(results) == {"audio", "checkpoint", "vocabulary", "encoder", "load_model", "workers"}, child.stdout
    escaped = {name: message for name, message in results.items() if message.startswith(("ESCAPED", "RETURNED"))}
    assert not escaped, escaped
    assert str(tmp_path / "1hz.wav") in results["audio"] and "1 Hz" in results["audio"]
    assert str(tmp_path / "bomb.pt") in results["checkpoint"] and "inflate" in results["checkpoint"]
    assert str(tmp_path / "hear" / "labelvocabulary.csv") in results["vocabulary"]
    assert "parameters" in results["encoder"]
    assert str(tmp_path / "1hz.wav") in results["load_model"]
    workers_errors = [line for line in child.stderr.splitlines() if line.startswith("musicrep: error:")]
    assert len(workers_errors) == 1 and "num_workers" in workers_errors[0], child.stderr
    assert str(tmp_path / "workers.toml") in workers_errors[0]
