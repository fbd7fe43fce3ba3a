"""The plugin host: discovery, lookups, duplicate names, config validation, broken plugins."""
from __future__ import annotations

import dataclasses
import types

import pytest

import musicrep
from musicrep.config import invalid
from musicrep.errors import ComponentError, ConfigError, PluginError
from musicrep.hookspecs import KINDS, hookimpl
from musicrep.registry import Registry


class Widget:
    """A test encoder that remembers its config."""

    @dataclasses.dataclass
    class Config:
        channels: int = 8
        dropout: float = 0.0
        mode: str = "fast"

        def __post_init__(self) -> None:
            if not 0 <= self.dropout < 1:
                raise invalid("dropout", f"must be in [0, 1), got {self.dropout}")

    def __init__(self, config: Config) -> None:
        self.config = config


def make_plugin(name: str, **factories) -> types.SimpleNamespace:
    @hookimpl
    def musicrep_encoders():
        return dict(factories)

    return types.SimpleNamespace(__name__=name, musicrep_encoders=musicrep_encoders)


@pytest.fixture
def registry() -> Registry:
    reg = Registry(load_entry_points=False)
    reg.register(make_plugin("alpha", widget=Widget), name="alpha", package="alpha-pkg")
    return reg


#: the plugins musicrep itself registers (setup.py's entry points)
BUILTIN_PLUGINS = {"frontends", "augmentations", "encoders", "objectives", "probes", "tasks", "logging",
                   "sfnfnet", "hear", "mule", "band_cnn"}


def check_builtins(registry: Registry) -> None:
    """Every built-in plugin is registered through the entry-point group, from musicrep; other
    packages' plugins may sit beside them (users install them)."""
    names = set(registry._packages)
    missing = BUILTIN_PLUGINS - names
    assert not missing, f"built-in plugins not found through the entry points: {sorted(missing)} (found: {sorted(names)})"
    foreign = {n: registry.plugin_package(n) for n in BUILTIN_PLUGINS if registry.plugin_package(n) != "musicrep"}
    assert not foreign, f"built-in plugin names registered by another package: {foreign}"


def test_builtins_are_discovered_through_entry_points() -> None:
    assert set(musicrep.list_components()) == set(KINDS)
    check_builtins(Registry())


def test_builtins_are_found_beside_an_installed_third_party_plugin(tmp_path, monkeypatch) -> None:
    """As users run the suite: with another package's plugin installed in the environment."""
    (tmp_path / "thirdparty_encoders.py").write_text(
        "from musicrep.hookspecs import hookimpl\n\n@hookimpl\ndef musicrep_encoders():\n    return {}\n")
    info = tmp_path / "thirdparty_encoders-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-encoders\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[musicrep.plugins]\nthirdparty = thirdparty_encoders\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry()
    assert registry.plugin_package("thirdparty") == "thirdparty-encoders"
    check_builtins(registry)


def test_get_component_validates_config(registry: Registry) -> None:
    widget = registry.create("encoder", "widget", channels=3, dropout=0.5)
    assert isinstance(widget, Widget)
    assert widget.config.channels == 3 and widget.config.dropout == 0.5
    info = registry.info("encoder", "widget")
    assert info.plugin == "alpha" and info.package == "alpha-pkg"
    assert info.summary == "A test encoder that remembers its config."


def test_unknown_key_names_the_closest_valid_key(registry: Registry) -> None:
    with pytest.raises(ConfigError) as err:
        registry.create("encoder", "widget", chanels=3)
    assert err.value.key == "chanels"
    assert "did you mean 'channels'" in str(err.value)


def test_wrong_type_and_range_name_the_key(registry: Registry) -> None:
    with pytest.raises(ConfigError, match="key 'channels'.*expected an integer"):
        registry.create("encoder", "widget", channels="many")
    with pytest.raises(ConfigError, match=r"key 'dropout': must be in \[0, 1\)"):
        registry.create("encoder", "widget", dropout=1.5)
    with pytest.raises(ConfigError, match="key 'channels'"):
        registry.create("encoder", "widget", channels=True)  # a bool is not an int


def test_unknown_component_lists_what_is_available(registry: Registry) -> None:
    with pytest.raises(ComponentError, match="unknown encoder 'wodget'; available: widget"):
        registry.create("encoder", "wodget")
    with pytest.raises(ComponentError, match="unknown component kind 'encodr'"):
        registry.components("encodr")


def test_duplicate_names_name_both_plugins(registry: Registry) -> None:
    registry.register(make_plugin("beta", widget=Widget), name="beta", package="beta-pkg")
    with pytest.raises(ComponentError) as err:
        registry.components("encoder")
    message = str(err.value)
    assert "'alpha' (package alpha-pkg)" in message and "'beta' (package beta-pkg)" in message
    registry.unregister("beta")
    assert set(registry.components("encoder")) == {"widget"}


def test_components_come_in_hook_call_order_last_registered_first(registry: Registry) -> None:
    """pluggy calls the plugin registered last first; components() lists in that order and a
    duplicate's message names the later plugin first."""
    registry.register(make_plugin("beta", gadget=Widget), name="beta")
    registry.register(make_plugin("gamma", gizmo=Widget), name="gamma")
    assert list(registry.components("encoder")) == ["gizmo", "gadget", "widget"]
    registry.register(make_plugin("delta", widget=Widget), name="delta")
    with pytest.raises(ComponentError, match="'delta' .* and 'alpha' "):
        registry.components("encoder")


def test_a_raising_hook_is_reported_and_the_others_still_serve(registry: Registry) -> None:
    @hookimpl
    def musicrep_encoders():
        raise RuntimeError("boom")

    registry.register(types.SimpleNamespace(musicrep_encoders=musicrep_encoders), name="broken",
                      package="broken-pkg")
    assert set(registry.components("encoder")) == {"widget"}
    [problem] = registry.problems
    assert problem.plugin == "broken" and problem.package == "broken-pkg" and "boom" in problem.message
    with pytest.raises(ComponentError, match="broken-pkg"):
        registry.create("encoder", "missing")


def test_a_hook_with_the_wrong_return_type_is_reported(registry: Registry) -> None:
    @hookimpl
    def musicrep_encoders():
        return ["not", "a", "mapping"]

    registry.register(types.SimpleNamespace(musicrep_encoders=musicrep_encoders), name="odd")
    assert set(registry.components("encoder")) == {"widget"}
    assert any(p.plugin == "odd" and "must return" in p.message for p in registry.problems)


def test_incompatible_hookspec_version_is_refused(registry: Registry) -> None:
    plugin = make_plugin("future", gadget=Widget)
    plugin.MUSICREP_HOOKSPEC_VERSION = 99
    with pytest.raises(PluginError, match="hook-spec version 99"):
        registry.register(plugin, name="future")


def test_lifecycle_hooks_reach_every_plugin_and_failures_only_warn(registry: Registry) -> None:
    seen = []

    @hookimpl
    def musicrep_on_stage_end(stage, run_dir, summary):
        seen.append((stage, summary["n"]))

    @hookimpl
    def musicrep_on_train_step(step):
        raise ValueError("logger down")

    registry.register(types.SimpleNamespace(musicrep_on_stage_end=musicrep_on_stage_end), name="log1")
    registry.register(types.SimpleNamespace(musicrep_on_train_step=musicrep_on_train_step), name="log2")
    registry.notify("musicrep_on_stage_end", stage="embed", run_dir="x", summary={"n": 3})
    assert seen == [("embed", 3)]
    with pytest.warns(RuntimeWarning, match="log2.*logger down"):
        registry.notify("musicrep_on_train_step", step=1, metrics={}, run_dir="x")


class NoConfig:
    """A factory without a Config dataclass."""


class UndataConfig:
    """A factory whose Config is not a dataclass."""

    class Config:
        pass


@pytest.mark.parametrize("provided, message", [
    ({1: Widget}, "got the key 1 (int, not a name)"),
    ({"thing": 3}, "got int for 'thing' (not a factory)"),
    ({"thing": NoConfig}, "encoder 'thing' needs a Config dataclass attribute (got none)"),
    ({"thing": UndataConfig}, "encoder 'thing' needs a Config dataclass attribute (got type)"),
])
def test_each_wrong_return_is_reported_with_plugin_and_package(registry: Registry, provided, message) -> None:
    @hookimpl
    def musicrep_encoders():
        return provided

    registry.register(types.SimpleNamespace(musicrep_encoders=musicrep_encoders), name="odd", package="odd-pkg")
    assert set(registry.components("encoder")) == {"widget"}
    [problem] = registry.problems
    assert (problem.plugin, problem.package) == ("odd", "odd-pkg") and message in problem.message


def test_documented_modules_are_reachable_after_import_musicrep() -> None:
    """README's ``musicrep.store.EmbeddingStore`` and docs/tasks.md's ``musicrep.audio.load``,
    in a fresh interpreter where nothing imported them first."""
    import subprocess
    import sys

    code = ("import musicrep, sys; assert 'musicrep.store' not in sys.modules; "
            "print(musicrep.store.EmbeddingStore.__name__, musicrep.audio.load.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["EmbeddingStore", "load"]
