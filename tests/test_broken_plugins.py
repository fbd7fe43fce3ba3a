"""Broken third-party plugins, installed as a user would have them (a distribution with entry
points on the path): each is reported by name and package, and neither ``musicrep plugins`` nor a
run that does not use them goes down."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline_fakes import synth_pitch_task

MODULES = {
    "bad_import": "import no_such_dependency_xyz\n",
    "bad_raises": """
        from musicrep.hookspecs import hookimpl

        @hookimpl
        def musicrep_encoders():
            raise RuntimeError("the plugin's own bug")
        """,
    "bad_type": """
        from musicrep.hookspecs import hookimpl

        @hookimpl
        def musicrep_encoders():
            return ["not", "a", "mapping"]
        """,
    "bad_noconfig": """
        from musicrep.hookspecs import hookimpl

        class NoConfig:
            '''An encoder without a Config dataclass.'''

        @hookimpl
        def musicrep_encoders():
            return {"no-config": NoConfig}
        """,
    "future_plugin": """
        from musicrep.hookspecs import hookimpl
        from musicrep.plugins.encoders import MelStats

        MUSICREP_HOOKSPEC_VERSION = 99

        @hookimpl
        def musicrep_encoders():
            return {"from-the-future": MelStats}
        """,
    "good_plugin": """
        from musicrep.hookspecs import hookimpl
        from musicrep.plugins.encoders import MelStats

        class Stats(MelStats):
            '''Mel statistics, from a healthy plugin beside the broken ones.'''

        @hookimpl
        def musicrep_encoders():
            return {"healthy-stats": Stats}
        """,
}
ENTRY_POINTS = {"bad-import": "bad_import", "bad-raises": "bad_raises", "bad-type": "bad_type",
                "bad-noconfig": "bad_noconfig", "future": "future_plugin", "healthy": "good_plugin"}
PACKAGE = "musicrep-broken-test"

PIPELINE = """
[run]
name = "survives"
device = "cpu"

""" + synth_pitch_task(0.5, sample_rate=8000) + """
[models.stats]
frontend = { type = "mel", sample_rate = 8000, n_fft = 256, hop_length = 128, n_mels = 16 }
encoder = { type = "healthy-stats", n_features = 16, n_mfcc = 4 }

[embed]
window = 0.5
hop = 0.5
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment with one installed distribution holding five broken plugins and a good one."""
    site = tmp_path_factory.mktemp("broken-site")
    for name, source in MODULES.items():
        (site / f"{name}.py").write_text(textwrap.dedent(source))
    dist = site / "musicrep_broken_test-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[musicrep.plugins]\n" + "".join(f"{ep} = {module}\n" for ep, module in ENTRY_POINTS.items()))
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def musicrep(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "musicrep.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_plugins_lists_the_others_and_reports_each_broken_one(env: dict[str, str]) -> None:
    result = musicrep(["plugins"], env)
    assert result.returncode == 0, result.stderr
    listing, _, problems = result.stdout.partition("plugins that failed to load:")
    assert "healthy-stats" in listing and f"[{PACKAGE}]" in listing and "fcn" in listing
    assert "from-the-future" not in listing and "no-config" not in listing
    expected = {
        "bad-import": "failed to import bad_import: ModuleNotFoundError",
        "bad-raises": "hook musicrep_encoders raised RuntimeError: the plugin's own bug",
        "bad-type": "hook musicrep_encoders must return {name: factory}, got list",
        "bad-noconfig": "encoder 'no-config' needs a Config dataclass",
        "future": "targets musicrep hook-spec version 99, but this musicrep speaks version 1",
    }
    for plugin, message in expected.items():
        line = next((line for line in problems.splitlines() if f"plugin '{plugin}'" in line), "")
        assert f"(package {PACKAGE})" in line and message in line, (plugin, problems)


def test_a_run_goes_on_beside_broken_plugins(env: dict[str, str], tmp_path: Path) -> None:
    toml = tmp_path / "pipeline.toml"
    toml.write_text(PIPELINE)
    result = musicrep(["run", str(toml)], env)
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "runs" / "survives" / "results.json").read_text())
    assert any(r["model"] == "stats" for r in rows)


def test_a_run_naming_a_refused_plugin_says_why(env: dict[str, str], tmp_path: Path) -> None:
    toml = tmp_path / "pipeline.toml"
    toml.write_text(PIPELINE.replace('type = "healthy-stats", n_features = 16, n_mfcc = 4',
                                     'type = "from-the-future"'))
    result = musicrep(["run", str(toml)], env)
    assert result.returncode == 2
    assert "unknown encoder 'from-the-future'" in result.stderr
    assert f"plugin 'future' (package {PACKAGE}): targets musicrep hook-spec version 99" in result.stderr
