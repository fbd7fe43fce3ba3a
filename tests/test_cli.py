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


def test_plugins_kind_name_lists_the_options() -> None:
    result = musicrep_cli("plugins", "task", "csv")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("  ") and line.split()}
    assert "str" in lines["path"] and "required" in lines["path"]
    assert "list[float]" in lines["split_ratios"] and "[0.8, 0.1, 0.1]" in lines["split_ratios"]
    assert "'multiclass' | 'multilabel' | 'regression'" in lines["prediction_type"]
    assert "between labels of a multilabel row" in lines["separator"]  # the field's comment


def test_plugins_with_a_component_name_for_a_kind_says_the_command() -> None:
    result = musicrep_cli("plugins", "csv")
    assert result.returncode == 2
    assert "`musicrep plugins task csv`" in result.stderr
    result = musicrep_cli("plugins", "encoders")
    assert result.returncode == 2 and "did you mean 'encoder'?" in result.stderr


def test_ops_are_reachable_from_the_package_and_load_on_first_use() -> None:
    code = ("import sys, musicrep; assert 'torch' not in sys.modules, 'import musicrep pulled in torch'; "
            "import torch; torch.manual_seed(0); w = torch.randn(2, 4000); "
            "a = musicrep.ops.mel_spectrogram(w, 16000, n_fft=512, n_mels=32); "
            "b = musicrep.ops.reference.mel_spectrogram(w, 16000, n_fft=512, n_mels=32); "
            "torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5); print(tuple(a.shape))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(2, 32, 32)"
