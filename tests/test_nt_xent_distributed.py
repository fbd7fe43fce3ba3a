"""NT-Xent with negatives gathered across 2 gloo processes equals the loss on the whole batch."""
from __future__ import annotations

import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from musicrep import ops
from musicrep.ops import reference

WORLD = 2
TEMPERATURE = 0.2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, port: int, z1: torch.Tensor, z2: torch.Tensor, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        n = z1.shape[0] // WORLD
        a = z1[rank * n:(rank + 1) * n].clone().requires_grad_()
        b = z2[rank * n:(rank + 1) * n].clone().requires_grad_()
        loss = ops.nt_xent(a, b, TEMPERATURE, gather=True)
        loss.backward()
        torch.save({"loss": loss.detach(), "g1": a.grad, "g2": b.grad}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_gathered_loss_and_gradients_equal_single_process(tmp_path: Path, rng: torch.Generator) -> None:
    n_per_rank, d = 5, 12
    z1 = torch.randn(WORLD * n_per_rank, d, generator=rng, dtype=torch.float64)
    z2 = z1 + 0.3 * torch.randn(WORLD * n_per_rank, d, generator=rng, dtype=torch.float64)
    mp.spawn(_rank_main, args=(_free_port(), z1, z2, str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    a, b = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    want = reference.nt_xent(a, b, TEMPERATURE)
    want.backward()
    # each rank averages its own anchors; the ranks' mean is the whole batch's loss
    torch.testing.assert_close(torch.stack([r["loss"] for r in ranks]).mean(), want.detach(), rtol=1e-12, atol=0)
    # each rank's gradient is that of the sum of all ranks' losses; DDP divides by the world size
    torch.testing.assert_close(torch.cat([r["g1"] for r in ranks]) / WORLD, a.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(torch.cat([r["g2"] for r in ranks]) / WORLD, b.grad, rtol=1e-10, atol=1e-12)
    # without a process group, gather=True is the plain single-process loss
    torch.testing.assert_close(ops.nt_xent(z1, z2, TEMPERATURE, gather=True), want.detach(), rtol=1e-12, atol=0)
