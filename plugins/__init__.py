"""musicrep's built-in components. Each module registers itself through the entry-point group
``musicrep.plugins`` (see setup.py), exactly as a third-party plugin package would."""
