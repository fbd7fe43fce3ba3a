"""The plugin host: finds plugins, collects their components, builds them from config.

Plugins come from the entry-point group ``musicrep.plugins`` (the built-ins too) or from
``Registry.register``. A plugin that fails to import, declares another hook-spec version, or
whose hook raises or returns the wrong type is recorded in ``Registry.problems`` with its name
and package, and the other plugins go on working.

A factory that imports code by name (the ``hear`` encoder's ``module``) sets the class attribute
``imports_code = True``: ``ComponentInfo.imports_code`` tells the readers of untrusted files
(checkpoint descriptions) to refuse it, so that only the user's own TOML or code can ask for it.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import inspect
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import pluggy

from musicrep import hookspecs
from musicrep.config import build_config
from musicrep.errors import ComponentError, PluginError


@dataclass(frozen=True)
class PluginProblem:
    """A plugin that could not serve; shown by ``musicrep plugins`` and in lookup errors."""

    plugin: str
    package: str
    message: str

    def __str__(self) -> str:
        return f"plugin '{self.plugin}' (package {self.package}): {self.message}"


@dataclass(frozen=True)
class ComponentInfo:
    """One component: what kind, what name, which plugin and package provide it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    package: str

    @property
    def config_class(self) -> type | None:
        """The options dataclass; None for the kinds configured otherwise (ready models)."""
        return getattr(self.factory, "Config", None) if self.kind not in hookspecs.UNCONFIGURED_KINDS else None

    @property
    def imports_code(self) -> bool:
        """Whether building it imports a module its config names (then only the user's own TOML
        or code may ask for it, never a file read from elsewhere)."""
        return bool(getattr(self.factory, "imports_code", False))

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.factory) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    def build_config(self, values: Mapping[str, Any] | None = None, *, file: str | None = None,
                     section: str | None = None, base_dir: Path | None = None) -> Any:
        """The component's config dataclass from ``values``, every key checked."""
        return build_config(self.config_class, values, file=file, section=section, base_dir=base_dir)

    def create(self, config: Any = None, **values: Any) -> Any:
        """An instance from a ready config object, or from keyword values (validated). A module
        too large for this machine is refused before its weights are allocated."""
        if self.config_class is None:
            raise ComponentError(f"{self.kind} '{self.name}' is not built from a config; "
                                 f"use musicrep.load_model('{self.name}')")
        if config is None:
            config = self.build_config(values, section=f"{self.kind}.{self.name}")
        elif values:
            raise TypeError("pass either a config object or keyword values, not both")
        if self.kind in SIZED_KINDS and not self.imports_code:
            check_size(self, config)
        return self.factory(config)


#: the kinds whose modules hold weights: each is first built on torch's meta device (no memory)
#: and its tensors counted, so that a config asking for an absurd size fails in one line
SIZED_KINDS = ("frontend", "encoder", "objective")


def memory_limit() -> int:
    """Bytes this process may allocate at most: the machine's memory, or the address-space
    limit (``ulimit -v``) where that is lower."""
    import os
    import resource

    limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    return min(limit, soft) if soft != resource.RLIM_INFINITY else limit


@functools.cache
def _skip_in_place_on_meta() -> type:
    """A torch-function mode under which in-place ops on meta tensors (the weight initialisers:
    ``normal_``, ``uniform_``, ...) return their tensor as it is: on the meta device they change
    nothing, and torch's first ``normal_`` there costs seconds of setup."""
    import torch
    from torch.overrides import TorchFunctionMode

    class SkipInPlaceOnMeta(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            name = getattr(func, "__name__", "")
            if (name.endswith("_") and not name.endswith("__") and args and isinstance(args[0], torch.Tensor)
                    and args[0].is_meta):
                return args[0]
            return func(*args, **(kwargs or {}))

    return SkipInPlaceOnMeta


def check_size(info: "ComponentInfo", config: Any) -> None:
    """Refuse a component whose weights and buffers would take more than half of ``memory_limit()``
    (before training doubles it). Counted on the meta device; a factory that cannot be built
    there is not counted (it is built for real, as before)."""
    import torch

    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"), _skip_in_place_on_meta()():
            module = info.factory(config)
        tensors = [*module.parameters(), *module.buffers()] if isinstance(module, torch.nn.Module) else []
        size = sum(t.numel() * t.element_size() for t in tensors)
    except Exception:  # noqa: BLE001 - e.g. a factory computing on its tensors at init: not countable here
        return
    allowed = memory_limit() // 2
    if size > allowed:
        count = sum(t.numel() for t in tensors)
        raise ComponentError(f"{info.kind} '{info.name}' would hold {count:,} parameters and buffers "
                             f"({size / 2**30:.1f} GiB), more than half of the {allowed * 2 / 2**30:.1f} GiB "
                             "this process may use; make it smaller")


def _package_of(plugin: object) -> str:
    module = inspect.getmodule(plugin) if not inspect.ismodule(plugin) else plugin
    name = getattr(module, "__name__", type(plugin).__module__) or "?"
    top = name.split(".")[0]
    dists = importlib.metadata.packages_distributions().get(top)
    return dists[0] if dists else top


def _wrong_return(provided: object) -> str | None:
    """What is wrong with a component hook's return value, or None when it is ``{name: factory}``."""
    if not isinstance(provided, Mapping):
        return f"got {type(provided).__name__}"
    for key, factory in provided.items():
        if not isinstance(key, str):
            return f"got the key {key!r} ({type(key).__name__}, not a name)"
        if not callable(factory):
            return f"got {type(factory).__name__} for '{key}' (not a factory)"
    return None


class Registry:
    """A plugin manager and the components its plugins provide."""

    def __init__(self, *, load_entry_points: bool = True) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._packages: dict[str, str] = {}
        self._load_problems: list[PluginProblem] = []
        self._components: dict[str, dict[str, ComponentInfo]] | None = None
        self._hook_problems: list[PluginProblem] = []
        self._lock = threading.RLock()
        if load_entry_points:
            self.load_entry_points()

    # -- plugins ---------------------------------------------------------------------------
    def load_entry_points(self, group: str = hookspecs.ENTRY_POINT_GROUP) -> None:
        for ep in importlib.metadata.entry_points(group=group):
            if self._pm.has_plugin(ep.name):
                continue
            package = ep.dist.name if ep.dist is not None else "?"
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken third-party plugin must not take the rest down
                self._load_problems.append(
                    PluginProblem(ep.name, package, f"failed to import {ep.value}: "
                                  f"{type(exc).__name__}: {exc}"))
                continue
            try:
                self.register(plugin, name=ep.name, package=package)
            except PluginError as exc:
                self._load_problems.append(PluginProblem(ep.name, package, str(exc)))

    def register(self, plugin: object, name: str | None = None, package: str | None = None) -> str:
        """Add a plugin object (a module or any object with ``@hookimpl`` functions)."""
        declared = getattr(plugin, "MUSICREP_HOOKSPEC_VERSION", hookspecs.HOOKSPEC_VERSION)
        if declared != hookspecs.HOOKSPEC_VERSION:
            raise PluginError(
                f"targets musicrep hook-spec version {declared}, but this musicrep speaks version "
                f"{hookspecs.HOOKSPEC_VERSION}; install a release of the plugin made for it")
        with self._lock:
            try:
                name = self._pm.register(plugin, name=name)
            except (ValueError, pluggy.PluginValidationError) as exc:
                raise PluginError(f"cannot register plugin {name or plugin!r}: {exc}") from exc
            self._packages[name] = package or _package_of(plugin)
            self._components = None
        return name

    def unregister(self, name: str) -> None:
        with self._lock:
            self._pm.unregister(name=name)
            self._packages.pop(name, None)
            self._components = None

    @property
    def problems(self) -> list[PluginProblem]:
        self._collect()
        return self._load_problems + self._hook_problems

    def plugin_package(self, name: str) -> str:
        return self._packages.get(name, "?")

    # -- components ------------------------------------------------------------------------
    def _collect(self) -> dict[str, dict[str, ComponentInfo]]:
        with self._lock:
            if self._components is not None:
                return self._components
            table: dict[str, dict[str, ComponentInfo]] = {kind: {} for kind in hookspecs.KINDS}
            problems: list[PluginProblem] = []
            duplicates: list[str] = []
            for kind, hook_name in hookspecs.COMPONENT_HOOKS.items():
                hook = getattr(self._pm.hook, hook_name)
                # pluggy's call order: the plugin registered last comes first (as pytest calls
                # hooks; tryfirst/trylast impls go before/after). It orders components() and
                # names the later plugin first in a duplicate's message.
                for impl in reversed(hook.get_hookimpls()):
                    plugin = impl.plugin_name
                    package = self.plugin_package(plugin)
                    try:
                        provided = impl.function()
                    except Exception as exc:
                        problems.append(PluginProblem(
                            plugin, package, f"hook {hook_name} raised {type(exc).__name__}: {exc}"))
                        continue
                    wrong = _wrong_return(provided)
                    if wrong:
                        problems.append(PluginProblem(
                            plugin, package, f"hook {hook_name} must return {{name: factory}}, {wrong}"))
                        continue
                    for comp_name, factory in provided.items():
                        cls = getattr(factory, "Config", None)
                        configured = kind not in hookspecs.UNCONFIGURED_KINDS
                        if configured and not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
                            problems.append(PluginProblem(
                                plugin, package, f"hook {hook_name}: {kind} '{comp_name}' needs a Config "
                                f"dataclass attribute (got {type(cls).__name__ if cls is not None else 'none'})"))
                            continue
                        previous = table[kind].get(comp_name)
                        if previous is not None:
                            duplicates.append(
                                f"{kind} '{comp_name}' is provided by two plugins: "
                                f"'{previous.plugin}' (package {previous.package}) and "
                                f"'{plugin}' (package {package})")
                            continue
                        table[kind][comp_name] = ComponentInfo(kind, comp_name, factory, plugin, package)
            if duplicates:
                raise ComponentError("; ".join(duplicates) + ". Uninstall or unregister one of them.")
            self._hook_problems = problems
            self._components = table
            return table

    def components(self, kind: str | None = None) -> dict[str, Any]:
        table = self._collect()
        if kind is None:
            return {k: dict(v) for k, v in table.items()}
        self._check_kind(kind)
        return dict(table[kind])

    def info(self, kind: str, name: str) -> ComponentInfo:
        self._check_kind(kind)
        available = self._collect()[kind]
        if name not in available:
            listing = ", ".join(sorted(available)) or "(none)"
            message = f"unknown {kind} '{name}'; available: {listing}"
            broken = [str(p) for p in self.problems]
            if broken:
                message += ". Plugins that failed to load: " + "; ".join(broken)
            raise ComponentError(message)
        return available[name]

    def create(self, kind: str, name: str, **config: Any) -> Any:
        return self.info(kind, name).create(**config)

    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in hookspecs.COMPONENT_HOOKS:
            raise ComponentError(f"unknown component kind '{kind}'; kinds: {', '.join(hookspecs.KINDS)}")

    # -- lifecycle -------------------------------------------------------------------------
    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call a lifecycle hook on every plugin; one that raises is reported, not fatal."""
        hook = getattr(self._pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            try:
                impl.function(**{a: kwargs[a] for a in impl.argnames})
            except Exception as exc:
                warnings.warn(f"plugin '{impl.plugin_name}' "
                              f"(package {self.plugin_package(impl.plugin_name)}): {hook_name} "
                              f"raised {type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)


_default: Registry | None = None
_default_lock = threading.Lock()


def default_registry() -> Registry:
    """The process-wide registry, loaded from entry points on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Registry()
        return _default


def list_components(kind: str | None = None) -> dict[str, Any]:
    """``{kind: {name: ComponentInfo}}``; with ``kind`` given, that kind's ``{name: ComponentInfo}``."""
    return default_registry().components(kind)


def get_component(kind: str, name: str, **config: Any) -> Any:
    """A ready component instance, its config validated against the component's dataclass."""
    return default_registry().create(kind, name, **config)
