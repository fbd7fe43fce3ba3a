"""musicrep-plugin-example: a tiny CNN encoder and a BYOL objective, as a third party ships them.

musicrep finds this module through the ``musicrep.plugins`` entry point in pyproject.toml,
checks ``MUSICREP_HOOKSPEC_VERSION`` against its own and calls the ``@hookimpl`` functions.
"""
from __future__ import annotations

from musicrep.hookspecs import Factories, hookimpl

from musicrep_plugin_example.byol import BYOL
from musicrep_plugin_example.encoder import TinyCNN

#: The musicrep hook-spec version this plugin was written against; a musicrep speaking another
#: version refuses the plugin with a message instead of failing somewhere inside a run.
MUSICREP_HOOKSPEC_VERSION = 1


@hookimpl
def musicrep_encoders() -> Factories:
    return {"tiny-cnn": TinyCNN}


@hookimpl
def musicrep_objectives() -> Factories:
    return {"byol": BYOL}
