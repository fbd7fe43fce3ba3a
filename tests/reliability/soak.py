"""Soak: kill -9 real ``musicrep run`` processes at random times, many times, and check that
every resumed run ends exactly where an undisturbed one ends. Not part of CI (minutes, not seconds):

    python tests/reliability/soak.py --kills 50 --seed 0

Each trial is a fresh run directory of the tiny pipeline of ``killing.py``. A trial's run is
started, killed at a random time, started again, killed again (``--per-trial`` times), then let
finish; its weights, training log, store, probe results and report are compared bit for bit with
an undisturbed run's. Each kill first draws a stage (pre-training, embedding, the store's
assembly at the end of embedding, probing; a trial's draws sorted, as a run walks through them)
and then a uniform random time within that stage, so every stage is hit, however long it takes. After each kill the files under
their real names must be whole, and nothing finished before the kill may disappear later.

It prints one line per kill and ends with "N of K kills resumed with nothing lost"; the exit status
is 0 only when N == K.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from killing import (MODEL, PROBES, STEPS, TASK, TRACKS, Process, assert_same_outputs, outputs,  # noqa: E402
                     probes_written, run_dir, steps_logged, store_path, write_pipeline)

STAGES = ("pretrain", "embed", "assembly", "probe")
POLL = 0.005


@dataclass
class Timeline:
    """Seconds from the start of an undisturbed run to the end of each stage."""

    pretrain: float
    embed: float
    probe: float


@dataclass
class Kill:
    trial: int
    stage: str
    delay: float
    state: str
    problems: list[str] = field(default_factory=list)


def final_model(run: Path) -> Path:
    return run / "models" / MODEL / "final.pt"


def embed_finished_tracks(process: Process) -> bool:
    """The embed progress bar reached its end: the store's assembly is next (or under way)."""
    return f"embed {MODEL}/{TASK}: 100%" in process.output()


def timeline(folder: Path) -> tuple[Timeline, dict[str, Any]]:
    """One undisturbed run, timed stage by stage; its outputs are what every trial must match."""
    folder.mkdir(parents=True)
    pipeline = write_pipeline(folder, "undisturbed")
    run = run_dir(pipeline)
    started = time.monotonic()
    process = Process("run", pipeline, log=folder / "undisturbed.log")
    marks = {}
    for stage, done in (("pretrain", lambda: final_model(run).exists()),
                        ("embed", lambda: store_path(run).exists()),
                        ("probe", lambda: (run / "results.json").exists())):
        while not done() and process.running():
            time.sleep(POLL)
        marks[stage] = time.monotonic() - started
    process.finish()
    return Timeline(**marks), outputs(run)


def snapshot(run: Path) -> dict[str, Any]:
    """What is finished and on disk under its real name; every such file must read whole."""
    state: dict[str, Any] = {"step": 0, "final": False, "store": None, "probes": {}}
    models = run / "models" / MODEL
    if (models / "last.pt").exists():
        state["step"] = torch.load(models / "last.pt", weights_only=True)["step"]
    if final_model(run).exists():
        torch.load(final_model(run), weights_only=True)
        state["final"] = True
    if store_path(run).exists():
        with h5py.File(store_path(run), "r") as h5:
            assert h5.attrs["complete"], "a store under its real name is not complete"
            state["store"] = np.asarray(h5["embeddings"][()]).tobytes()
    for probe in probes_written(run):
        text = (run / "probes" / MODEL / TASK / f"{probe}.json").read_text()
        json.loads(text)
        state["probes"][probe] = text
    return state


def lost(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What was finished in ``before`` and is gone (or different) in ``after``."""
    problems = []
    if after["step"] < before["step"] and not after["final"]:
        problems.append(f"checkpoint went back from step {before['step']} to {after['step']}")
    if before["final"] and not after["final"]:
        problems.append("final.pt disappeared")
    if before["store"] is not None and after["store"] != before["store"]:
        problems.append("the finished store changed or disappeared")
    for probe, text in before["probes"].items():
        if after["probes"].get(probe) != text:
            problems.append(f"probe result {probe} changed or disappeared")
    return problems


def stages_left(run: Path) -> list[str]:
    if not final_model(run).exists():
        return list(STAGES)
    if not store_path(run).exists():
        return ["embed", "assembly", "probe"]
    return ["probe"]


def wait_then_kill(process: Process, run: Path, stage: str, times: Timeline, rng: np.random.Generator) -> float | None:
    """Wait until ``stage`` is under way, then a uniform random time within it; kill -9. Returns
    the delay, or None when the run finished (or left the stage) first."""
    started = {"pretrain": lambda: True,  # from the start: importing is part of its time
               "embed": lambda: f"embed {MODEL}/{TASK}:" in process.output(),
               "assembly": lambda: embed_finished_tracks(process),
               "probe": lambda: re.search(rf"embed {MODEL}/{TASK}: (cached|\d+ tracks)", process.output())}[stage]
    length = {"pretrain": times.pretrain, "embed": times.embed - times.pretrain,
              "assembly": 0.1 * (times.embed - times.pretrain),  # a short window after the last track
              "probe": times.probe - times.embed}[stage]
    while not started():
        if not process.running():
            return None
        time.sleep(POLL)
    delay = float(rng.uniform(0, max(length, 0.01)))
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        if not process.running():
            return None
        time.sleep(POLL)
    if not process.running():
        return None
    process.kill()
    return delay


def describe(run: Path, state: dict[str, Any]) -> str:
    if not state["final"]:
        return f"pre-training (checkpoint at step {state['step']} of {STEPS}, {steps_logged(run)} logged)"
    if state["store"] is None:
        parts = sorted(run.glob("stores/*/journal/part-*"))
        return f"embedding ({len(parts)} part files of {TRACKS} tracks)"
    return f"probing ({len(state['probes'])} of {len(PROBES)} results)"


def trial(index: int, kills: int, folder: Path, times: Timeline, expected: dict[str, Any],
          seed: int, report: Any) -> list[Kill]:
    rng = np.random.default_rng([seed, index])
    folder.mkdir(parents=True)
    pipeline = write_pipeline(folder, f"trial{index}")
    run = run_dir(pipeline)
    done: list[Kill] = []
    before = snapshot(run)
    attempt = 0
    # each kill aims at a stage drawn uniformly, in stage order: a trial walks through the stages
    targets = sorted(int(t) for t in rng.integers(0, len(STAGES), size=kills))
    while len(done) < kills:
        first_left = STAGES.index(stages_left(run)[0])
        stage = STAGES[max(targets[len(done)], first_left)]
        attempt += 1
        process = Process("run", pipeline, log=folder / f"{attempt}.log")
        delay = wait_then_kill(process, run, stage, times, rng)
        if delay is None:  # the run ended first: it must have ended well; the trial is over
            process.finish()
            break
        state = snapshot(run)
        kill = Kill(index, stage, delay, describe(run, state), lost(before, state))
        before = state
        done.append(kill)
        report(kill)
    process = Process("run", pipeline, log=folder / "last.log")
    process.finish()
    problems = lost(before, snapshot(run))
    try:
        assert_same_outputs(expected, outputs(run))
    except AssertionError as exc:
        problems.append(f"outputs differ from the undisturbed run: {exc or 'assertion'}")
    if problems:
        for kill in done:
            kill.problems += problems
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-trial", type=int, default=5, help="kills before a trial's run may finish")
    parser.add_argument("--jobs", type=int, default=1, help="trials side by side")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run directories here")
    args = parser.parse_args(argv)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="musicrep-soak-"))
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        times, expected = timeline(folder / "undisturbed")
        print(f"undisturbed run: pre-training ends at {times.pretrain:.1f} s, embedding at {times.embed:.1f} s, "
              f"probing at {times.probe:.1f} s", flush=True)
        count = [0]

        def report(kill: Kill) -> None:
            count[0] += 1
            print(f"kill {count[0]}: trial {kill.trial}, aimed at {kill.stage} (+{kill.delay:.2f} s), hit "
                  f"{kill.state}{': ' + '; '.join(kill.problems) if kill.problems else ''}", flush=True)

        kills: list[Kill] = []
        index = 0
        while len(kills) < args.kills:
            batch = []
            wanted = args.kills - len(kills)
            with ThreadPoolExecutor(args.jobs) as pool:
                for _ in range(min(args.jobs, -(-wanted // args.per_trial))):
                    n = min(args.per_trial, wanted - sum(b[1] for b in batch))
                    batch.append((pool.submit(trial, index, n, folder / f"trial{index}", times, expected,
                                              args.seed, report), n))
                    index += 1
                for future, _ in batch:
                    kills += future.result()
        kills = kills[:args.kills]
        good = [k for k in kills if not k.problems]
        by_stage = {s: sum(1 for k in kills if k.state.startswith(w))
                    for s, w in (("pre-training", "pre-training"), ("embedding", "embedding"),
                                 ("probing", "probing"))}
        aimed = {s: sum(1 for k in kills if k.stage == s) for s in STAGES}
        print(f"kills by stage hit: {by_stage}; aimed at: {aimed}")
        for kill in kills:
            if kill.problems:
                print(f"LOST: trial {kill.trial}: {'; '.join(kill.problems)}")
        print(f"{len(good)} of {len(kills)} kills resumed with nothing lost "
              f"({time.monotonic() - started:.0f} s)")
        return 0 if len(good) == len(kills) == args.kills else 1
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
