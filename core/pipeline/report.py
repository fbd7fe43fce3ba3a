"""The report stage: every finished probe of the run directory in one table, files and plots
(``musicrep.report`` renders them; ``musicrep report RUN_DIR`` does the same without a run)."""
from __future__ import annotations

from typing import Any

from musicrep.pipeline.context import RunContext, StageOutcome
from musicrep.report import write_report


def run(context: RunContext, inputs: Any = None) -> StageOutcome:
    """The report table as text; always rendered again (it reads whatever results are there)."""
    text = write_report(context.run.root)
    return StageOutcome(text, {"report": str(context.run.report), "cached": False})
