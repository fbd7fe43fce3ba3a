"""Fused NT-Xent against the materialised PyTorch reference: forward + backward time, peak memory.

Time: pytest-benchmark, one forward + backward per round, on fresh leaf tensors each round.
Peak extra memory on the CPU: each (implementation, N, D) runs once more in a fresh Python
process (Linux), which resets its peak resident set size (writing 5 to /proc/self/clear_refs)
after making its inputs and reads the peak (VmHWM) after the forward + backward; the rise over
the resident size before is the memory the step added (gradients included, for both). On CUDA:
torch.cuda.max_memory_allocated above the inputs.

With benchmarks enabled (``make bench`` or ``pytest benchmarks/test_bench_nt_xent.py
--benchmark-enable``) the table is written to benchmarks/results/nt_xent.md.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from musicrep import ops
from musicrep.ops import reference

IMPLS = {"fused": ops.nt_xent, "reference": reference.nt_xent}
SIZES = [(n, d) for n in (256, 1024, 4096, 8192) for d in (128, 512)]
TEMPERATURE = 0.1
RESULTS = Path(__file__).parent / "results" / "nt_xent.md"
_rows: dict[tuple[str, str, int, int], dict] = {}

_PEAK_SCRIPT = """
import json, re, sys, torch
from musicrep import ops
from musicrep.ops import reference
def status(key):
    return int(re.search(key + r":\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) * 1024
impl, n, d = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fn = ops.nt_xent if impl == "fused" else reference.nt_xent
z1, z2 = (torch.randn(8, d, requires_grad=True) for _ in range(2))
fn(z1, z2, 0.1).backward()  # load every library first
z1, z2 = (torch.randn(n, d, requires_grad=True) for _ in range(2))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak resident set size (VmHWM) to the current one
before = status("VmRSS")
fn(z1, z2, 0.1).backward()
print(json.dumps({"peak_extra_bytes": status("VmHWM") - before}))
"""


def _cpu_peak_extra_bytes(impl: str, n: int, d: int) -> int:
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, impl, str(n), str(d)], check=True,
                         capture_output=True, text=True, env=os.environ.copy())
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_extra_bytes"]


def _cuda_peak_extra_bytes(fn, z1: torch.Tensor, z2: torch.Tensor) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn(z1, z2, TEMPERATURE).backward()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def _rounds(n: int) -> int:
    return 5 if n <= 1024 else 2


def _run(benchmark, impl: str, device: str, n: int, d: int) -> None:
    if benchmark.disabled and n > 1024:
        pytest.skip("the large sizes run only with --benchmark-enable")
    fn = IMPLS[impl]

    def setup():
        z1 = torch.randn(n, d, device=device, requires_grad=True)
        z2 = torch.randn(n, d, device=device, requires_grad=True)
        return (z1, z2), {}

    def step(z1: torch.Tensor, z2: torch.Tensor) -> None:
        fn(z1, z2, TEMPERATURE).backward()
        if device == "cuda":
            torch.cuda.synchronize()

    benchmark.group = f"nt_xent {device} N={n} D={d}"
    benchmark.pedantic(step, setup=setup, rounds=_rounds(n), warmup_rounds=1 if n <= 1024 else 0)
    if device == "cpu":
        peak = _cpu_peak_extra_bytes(impl, n, d)
    else:
        (z1, z2), _ = setup()
        peak = _cuda_peak_extra_bytes(fn, z1, z2)
    benchmark.extra_info["peak_extra_MiB"] = round(peak / 2**20, 1)
    if not benchmark.disabled:
        _rows[(device, impl, n, d)] = {"seconds": benchmark.stats.stats.min, "peak": peak}


@pytest.fixture(scope="module", autouse=True)
def _write_table():
    yield
    if _rows:
        _write_results()


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("n, d", SIZES)
def test_nt_xent_cpu(benchmark, impl: str, n: int, d: int) -> None:
    _run(benchmark, impl, "cpu", n, d)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("n, d", SIZES)
def test_nt_xent_cuda(benchmark, impl: str, n: int, d: int) -> None:
    _run(benchmark, impl, "cuda", n, d)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _write_results() -> None:
    lines = [
        "# NT-Xent: fused (musicrep.ops.nt_xent) vs materialised reference",
        "",
        f"Machine: {_cpu_model()}, {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} at the end), "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads); "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC. "
        "Produced by benchmarks/test_bench_nt_xent.py (one run).",
        "",
        "Time: fastest round of forward + backward (pytest-benchmark; 5 rounds for N <= 1024, 2 above). "
        "Peak extra memory: CPU, the rise of the peak resident set size (VmHWM, reset before the step) in a fresh process "
        "(gradients included); CUDA, max_memory_allocated above the inputs. Temperature 0.1, float32.",
        "",
        "| device | N | D | fused s | reference s | speed-up | fused peak MiB | reference peak MiB | memory ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for device in ("cpu", "cuda"):
        for n, d in SIZES:
            f, r = _rows.get((device, "fused", n, d)), _rows.get((device, "reference", n, d))
            if not f or not r:
                continue
            lines.append(
                f"| {device} | {n} | {d} | {f['seconds']:.4f} | {r['seconds']:.4f} | "
                f"{r['seconds'] / f['seconds']:.2f}x | {f['peak'] / 2**20:.1f} | {r['peak'] / 2**20:.1f} | "
                f"{r['peak'] / max(f['peak'], 1):.0f}x |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
