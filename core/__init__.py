"""musicrep: learn and evaluate audio representations for music understanding.

Pre-train an audio encoder (supervised or contrastive), embed catalogs once into HDF5, and
probe the frozen embeddings on many music tasks, comparing models side by side.
"""
from musicrep._version import __version__
from musicrep.errors import ComponentError, ConfigError, MusicrepError, PluginError
from musicrep.registry import get_component, list_components

__all__ = [
    "__version__",
    "ComponentError",
    "ConfigError",
    "MusicrepError",
    "PluginError",
    "get_component",
    "list_components",
]
