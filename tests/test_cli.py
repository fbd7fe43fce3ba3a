"""The musicrep command: version, plugin listing, and config errors without tracebacks."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import musicrep
from musicrep.hookspecs import KINDS


def musicrep_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "musicrep.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_version() -> None:
    result = musicrep_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"musicrep {musicrep.__version__}"


def test_plugins_lists_every_kind() -> None:
    result = musicrep_cli("plugins")
    assert result.returncode == 0, result.stderr
    for kind in KINDS:
        assert f"{kind}:" in result.stdout


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[embed]\nwindw = 3.0\n", "[embed] key 'windw': unknown key; did you mean 'window'?"),
        ("[run]\nsed = 1\n", "[run] key 'sed': unknown key; did you mean 'seed'?"),
        ("[embedd]\n", "key 'embedd': unknown key; did you mean 'embed'?"),
        ("[embed]\nwindow = 'long'\n", "[embed] key 'window': expected a number, got 'long'"),
        ("[embed]\nhop = -1\n", "[embed] key 'hop': must be positive seconds, got -1.0"),
        ("[run]\ndevice = 'tpu'\n", "[run] key 'device': must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
        ("[run\n", "not valid TOML"),
    ],
)
def test_config_errors_name_file_section_and_key(tmp_path: Path, toml: str, expected: str) -> None:
    path = tmp_path / "pipeline.toml"
    path.write_text(toml)
    result = musicrep_cli("run", str(path))
    assert result.returncode == 2
    assert str(path) in result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_missing_pipeline_file(tmp_path: Path) -> None:
    result = musicrep_cli("run", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "nope.toml: no such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.toml"
    path.write_text("[embed]\nwindw = 3.0\n")
    result = musicrep_cli("--debug", "run", str(path))
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "ConfigError" in result.stderr
