"""MULE end to end: musicrep.load_model("mule") against mule-torch, same weights, same threads.

One 30 s clip at 16 kHz -> its track embedding (log-mel, 15 slices, SF-NFNet-F0, mean).
extra_info: x_realtime (audio seconds per wall second), cpu_s (process CPU seconds of the last
round: fairer than wall time on a shared machine), max_rel_diff against mule-torch in float32.
Run: pytest benchmarks/test_bench_mule.py --benchmark-enable   (MUSICREP_BENCH_THREADS=1 for one core)
"""
from __future__ import annotations

import os
import time

import pytest
import torch

import musicrep
from musicrep.load import ReadyModel

mule_torch = pytest.importorskip("mule_torch")

SECONDS, SR = 30.0, 16000
THREADS = int(os.environ.get("MUSICREP_BENCH_THREADS", "2"))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    theirs = mule_torch.MuleModel(mule_torch.MuleConfig()).eval()
    with torch.no_grad():  # trained-looking weights: no branch silenced by its zero-initialised gain
        for name, p in theirs.named_parameters():
            if name.endswith("skip_gain"):
                p.uniform_(0.5, 1.5)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.1)
    folder = tmp_path_factory.mktemp("mule") / "weights"
    theirs.save_pretrained(folder)
    ours = musicrep.load_model("mule", weights=folder)
    wave = 0.3 * torch.randn(1, int(SECONDS * SR), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        reference = theirs(wave)
    return {"theirs": theirs, "ours": ours, "wave": wave, "reference": reference}


def run_mule_torch(model, wave, precision):
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        return model(wave).float()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("impl", ["musicrep", "mule-torch"])
def test_mule_track_embedding(benchmark, models, impl: str, precision: str) -> None:
    wave = models["wave"]
    if impl == "musicrep":
        model = ReadyModel(models["ours"].embedder, precision)
        call = lambda: model(wave)  # noqa: E731
    else:
        call = lambda: run_mule_torch(models["theirs"], wave, precision)  # noqa: E731
    benchmark.group = f"mule 30 s clip, {precision}"
    cpu = []

    def timed():
        start = time.process_time()
        out = call()
        cpu.append(time.process_time() - start)
        return out

    out = benchmark.pedantic(timed, rounds=5, iterations=1, warmup_rounds=1)
    ref = models["reference"]
    benchmark.extra_info.update({
        "x_realtime": SECONDS / benchmark.stats.stats.min, "cpu_s": min(cpu), "threads": THREADS,
        "max_rel_diff": ((out - ref).abs().max() / ref.abs().max()).item()})
    assert out.shape == (1, 1728)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_mule_speedup_interleaved(benchmark, models, precision: str) -> None:
    """Both implementations called alternately, so a load burst on a shared machine hits both
    alike; the speed-up is the ratio of each one's fastest call (extra_info)."""
    wave = models["wave"]
    ours = ReadyModel(models["ours"].embedder, precision)
    calls = {"musicrep": lambda: ours(wave), "mule-torch": lambda: run_mule_torch(models["theirs"], wave, precision)}
    times: dict[str, list[float]] = {name: [] for name in calls}

    def pair() -> None:
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)

    benchmark.group = f"mule 30 s clip, {precision}, both alternately"
    benchmark.pedantic(pair, rounds=5, iterations=1, warmup_rounds=1)
    best = {name: min(t) for name, t in times.items()}
    benchmark.extra_info.update({"musicrep_s": best["musicrep"], "mule_torch_s": best["mule-torch"],
                                 "speedup": best["mule-torch"] / best["musicrep"],
                                 "musicrep_x_realtime": SECONDS / best["musicrep"],
                                 "mule_torch_x_realtime": SECONDS / best["mule-torch"], "threads": THREADS})
