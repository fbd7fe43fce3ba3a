"""A Ctrl-C whose exception some code on its way swallows still stops the run at the next
track: the signal is recorded, and the loops look at the record."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch

from musicrep import interrupts
from musicrep.embed import default_store, extract
from musicrep.store import StoreWriter
from pipeline_fakes import ToneTask
from test_store import make_embedder


class SwallowingTask(ToneTask):
    """At its ``at``-th decode, Ctrl-C reaches the process inside code that drops the exception
    (as a library's cleanup or callback might)."""

    def __init__(self, config: ToneTask.Config, at: int) -> None:
        super().__init__(config)
        self.calls, self.at, self.swallowed = 0, at, 0

    def audio(self, item, sample_rate):
        self.calls += 1
        if self.calls == self.at:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)  # the handler runs here, at the latest
            except KeyboardInterrupt:
                self.swallowed += 1
        return super().audio(item, sample_rate)


@pytest.fixture
def handlers() -> Iterator[None]:
    """musicrep's handlers for the test, as a fresh ``musicrep`` process has them (whatever an
    earlier test did to this process's: an ignored or blocked SIGINT would never arrive); the
    process's own back afterwards."""
    signums = (signal.SIGINT, signal.SIGTERM)
    saved = {s: signal.getsignal(s) for s in signums}
    blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, set(signums))
    for s in signums:
        signal.signal(s, signal.SIG_DFL)
    interrupts.install()
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    interrupts._received.clear()


def test_a_swallowed_interrupt_stops_the_extraction_at_the_next_track(tmp_path: Path, handlers: None) -> None:
    device = "cpu"
    seed = int(torch.randint(0, 2**31 - 1, ()))
    at = int(np.random.default_rng(seed).integers(3, 10))
    task = SwallowingTask(ToneTask.Config(per_class=5, seconds=0.8), at)
    store, provenance = tmp_path / "s.h5", {"model": "m", "seed": seed}
    with pytest.raises(interrupts.Interrupted):
        extract(make_embedder(seed), task, store, provenance, batch_size=4, progress=False, flush_every=1,
                num_workers=0, device=device)
    assert task.swallowed == 1 and interrupts.received() == signal.SIGINT
    assert task.calls == at  # stopped before decoding another track
    kept = StoreWriter(default_store(store), provenance).done_ids
    assert 0 < len(kept) <= at  # the tracks encoded before the stop are kept
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # later Ctrl-Cs change nothing
