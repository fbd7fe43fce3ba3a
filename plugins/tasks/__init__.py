"""Built-in tasks: HEAR folders, CSV manifests, the standard MIR sets, and a synthetic task.

One module per task family; this module only registers them (setup.py's entry point is
``tasks = musicrep.plugins.tasks``). The MIR sets read a user's local copy; nothing downloads.
"""
from __future__ import annotations

from musicrep.hookspecs import Factories, hookimpl
from musicrep.plugins.tasks.emomusic import EmoMusicTask
from musicrep.plugins.tasks.giantsteps import GiantStepsKeyTask
from musicrep.plugins.tasks.gtzan import GtzanTask
from musicrep.plugins.tasks.hear import HearTask
from musicrep.plugins.tasks.jamendo import JamendoTask
from musicrep.plugins.tasks.magnatagatune import MagnaTagATuneTask
from musicrep.plugins.tasks.manifest import CsvTask
from musicrep.plugins.tasks.nsynth import NSynthTask
from musicrep.plugins.tasks.synth import SynthTask
from musicrep.plugins.tasks.vocalset import VocalSetTask


@hookimpl
def musicrep_tasks() -> Factories:
    return {
        "hear": HearTask,
        "csv": CsvTask,
        "synth": SynthTask,
        "magnatagatune": MagnaTagATuneTask,
        "mtg-jamendo": JamendoTask,
        "gtzan": GtzanTask,
        "giantsteps-key": GiantStepsKeyTask,
        "nsynth": NSynthTask,
        "emomusic": EmoMusicTask,
        "vocalset": VocalSetTask,
    }
