"""The pipeline: a TOML file describing tasks, models and stages, run stage by stage."""
