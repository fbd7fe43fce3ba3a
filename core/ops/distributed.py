"""Collectives that carry gradients, for losses whose negatives come from every rank."""
from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    """Processes in the default group; 1 when torch.distributed is not initialised."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _AllGather(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for this rank's slice.

    Each rank's loss uses the other ranks' rows, so the gradient of the sum of all ranks' losses
    with respect to this rank's rows is the all-reduced sum of what each rank sends back.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx.rank = dist.get_rank()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        return tuple(parts)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor) -> torch.Tensor:
        summed = torch.stack(grads)
        dist.all_reduce(summed)
        return summed[ctx.rank]


def all_gather_with_grad(x: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's ``x`` in rank order, differentiable; all ranks must pass the same shape."""
    x = x.contiguous()
    shapes = [torch.empty(x.dim(), dtype=torch.int64, device=x.device) for _ in range(world_size())]
    dist.all_gather(shapes, torch.tensor(x.shape, dtype=torch.int64, device=x.device))
    if any(s.tolist() != list(x.shape) for s in shapes):
        raise ValueError("all_gather_with_grad needs the same shape on every rank, got "
                         f"{[tuple(s.tolist()) for s in shapes]}")
    return list(_AllGather.apply(x))
