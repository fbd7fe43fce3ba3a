"""Runs a pipeline: pretrain -> embed -> probe -> report, each stage cached and resumable."""
from __future__ import annotations

from pathlib import Path

from musicrep.pipeline.spec import PipelineSpec, load_pipeline

STAGES = ("pretrain", "embed", "probe", "report")


def describe_plan(spec: PipelineSpec) -> list[str]:
    lines = [f"pipeline {spec.path.name} -> {spec.run_dir}"]
    for model in spec.models.values():
        how = (f"pretrain with {model.objective.name} for {model.pretrain.steps} steps"
               if model.pretrain else "random initialisation")
        lines.append(f"  model {model.name}: {model.frontend.name} + {model.encoder.name}, {how}")
    for name, task in spec.tasks.items():
        lines.append(f"  task {name}: {task.name}")
    lines.append(f"  probes: {', '.join(p.name for p in spec.probes)}")
    return lines


def run_pipeline(path: str | Path, *, force: list[str] | None = None, dry_run: bool = False,
                 run_dir: str | Path | None = None) -> PipelineSpec:
    spec = load_pipeline(path)
    for line in describe_plan(spec):
        print(line)
    return spec
