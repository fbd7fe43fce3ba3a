"""Soak: the fuzz suite (``tests/reliability/test_fuzz_*.py``) with a large example budget, round
after round with fresh random draws, for as long as asked. Not part of CI:

    python tests/reliability/fuzz_soak.py --minutes 20 [--examples 2000] [--log soak.log]

Each round runs every fuzz test once with ``MUSICREP_FUZZ_EXAMPLES`` examples each; Hypothesis
draws new inputs every round (no example database, no fixed seed). It prints one line per round
and ends with "N rounds, K failures"; a failing round's full output (the shrunk failing input and
its traceback) goes to the log. The exit status is 0 only when nothing failed.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="how long to keep starting rounds")
    parser.add_argument("--examples", type=int, default=2000, help="examples per fuzz test per round")
    parser.add_argument("--log", type=Path, default=Path("fuzz_soak.log"), help="where failing rounds are written")
    parser.add_argument("-k", default=None, help="only the fuzz tests matching this pytest expression")
    args = parser.parse_args()
    tests = sorted(str(p) for p in HERE.glob("test_fuzz_*.py"))
    env = {**os.environ, "MUSICREP_FUZZ_EXAMPLES": str(args.examples)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests, *(["-k", args.k] if args.k else [])]
    deadline, rounds, failures = time.monotonic() + 60 * args.minutes, 0, 0
    while time.monotonic() < deadline:
        rounds += 1
        started = time.monotonic()
        run = subprocess.run(command, env=env, capture_output=True, text=True, cwd=HERE.parent.parent)
        summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else "(no output)"
        print(f"round {rounds}: {summary} ({time.monotonic() - started:.0f} s)", flush=True)
        if run.returncode != 0:
            failures += 1
            with args.log.open("a", encoding="utf-8") as log:
                log.write(f"==== round {rounds} ====\n{run.stdout}\n{run.stderr}\n")
    print(f"{rounds} rounds, {failures} failures" + (f"; see {args.log}" if failures else ""))
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
