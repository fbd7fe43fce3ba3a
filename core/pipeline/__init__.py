"""The pipeline: a TOML file describing tasks, models and stages (``spec``), checked, planned and
run stage by stage (``runner``); each stage (``pretrain``, ``embed``, ``probe``, ``report``) is a
module over one typed ``context.RunContext``."""
