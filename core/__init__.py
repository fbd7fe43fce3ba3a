"""musicrep: learn and evaluate audio representations for music understanding.

Pre-train an audio encoder (supervised or contrastive), embed catalogs once into HDF5, and
probe the frozen embeddings on many music tasks, comparing models side by side.
"""
from musicrep._version import __version__
from musicrep.errors import ComponentError, ConfigError, MusicrepError, PluginError
from musicrep.registry import get_component, list_components


#: the modules the documentation uses as ``musicrep.<module>`` after ``import musicrep``
#: (``musicrep.store.EmbeddingStore``, ``musicrep.audio.load``): each imported on first use
LAZY_MODULES = ("audio", "metrics", "paired", "plots", "probing", "report", "store", "tasks", "text")


def __getattr__(name: str):
    # load_model and ops pull in torch; keep ``import musicrep`` (and the CLI's start) light
    # without it: each is imported on first use
    if name in LAZY_MODULES:
        import importlib

        return importlib.import_module(f"musicrep.{name}")
    if name == "load_model":
        from musicrep.load import load_model

        return load_model
    if name == "ops":
        import importlib

        importlib.import_module("musicrep.ops.reference")  # binds ops.reference too
        return importlib.import_module("musicrep.ops")
    raise AttributeError(f"module 'musicrep' has no attribute {name!r}")


__all__ = [
    "__version__",
    "ComponentError",
    "ConfigError",
    "MusicrepError",
    "PluginError",
    "get_component",
    "list_components",
    "load_model",
    "ops",
    *LAZY_MODULES,
]
