"""A pre-training folder source is walked within bounds (issue 25 item 4).

``pretrain.data = ["/"]`` walked the whole filesystem. Through the pipeline now: a root of ``/``
(or a link to it) is refused in one line by the config check, before the run folder exists; a
folder with link cycles and links into ``/proc`` pre-trains on its own audio files only.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cli_in_process import cli
from pipeline_fakes import small_pretrain_pipeline


@pytest.mark.parametrize("data", ['"/"', '"everything"', '"/proc"'])
@pytest.mark.parametrize("dry_run", [True, False])
def test_a_walk_of_the_whole_filesystem_is_refused_before_the_run(tmp_path: Path, data: str, dry_run: bool) -> None:
    (tmp_path / "everything").symlink_to("/")
    toml = tmp_path / "walk.toml"
    toml.write_text(small_pretrain_pipeline(run='"walk"', data=data))
    code, err = cli("run", *(["--dry-run"] if dry_run else []), toml)
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1, err
    assert "refusing to walk" in lines[0] and data.strip('"') in lines[0]
    assert not (tmp_path / "runs").exists()


def test_a_folder_with_link_cycles_pretrains_on_its_own_audio(tmp_path: Path, caplog) -> None:
    audio = tmp_path / "audio"
    rng = np.random.default_rng()
    for i, sub in enumerate(["a", "a/b", "a/b", "c", "c"]):
        (audio / sub).mkdir(parents=True, exist_ok=True)
        sf.write(audio / sub / f"clip{i}.wav", 0.1 * rng.standard_normal(8000).astype(np.float32), 16000)
    (audio / "a" / "b" / "loop").symlink_to(audio)  # a cycle back to the root
    (audio / "c" / "kernel").symlink_to("/proc")  # millions of synthetic entries, and /proc/kcore
    toml = tmp_path / "walk.toml"
    toml.write_text(small_pretrain_pipeline(run='"walk"', data='"audio"'))
    code, err = cli("run", toml)
    assert code == 0, err
    assert f"{audio / 'c' / 'kernel'}: skipped, a kernel or device filesystem" in caplog.messages
    assert (tmp_path / "runs" / "walk" / "models" / "small" / "final.pt").is_file()
    assert "pre-training has" not in err
