"""Fused NT-Xent (SimCLR's contrastive loss) whose memory grows linearly with the batch.

The compiled core returns each anchor's log-sum-exp over its similarities to every other
candidate, computed tile by tile with an online log-sum-exp and recomputed in the backward pass,
so the 2N x 2N similarity matrix is never held: extra memory is O(N * D + N). The positive
logits, the mean and the L2 normalisation are O(N * D) and stay in PyTorch, whose autograd
differentiates them exactly; keeping them out of the kernel keeps it one job (and lets the
distributed path gather normalised rows).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from musicrep._native import native_ops
from musicrep.ops import distributed, validate

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_inputs(z1: object, z2: object, temperature: object) -> None:
    """Raise a ValueError naming the argument for anything the loss is not defined on."""
    for name, z in (("z1", z1), ("z2", z2)):
        if not isinstance(z, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
        if z.dim() != 2:
            raise ValueError(f"{name} must be a 2-D [N, D] tensor of embeddings, got shape {tuple(z.shape)}")
        if z.dtype not in _FLOAT_DTYPES:
            raise ValueError(f"{name} must be float16, bfloat16, float32 or float64, got {z.dtype}")
        validate.has_data(name, z)
    if z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must have the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.dtype != z2.dtype or z1.device != z2.device:
        raise ValueError(f"z1 and z2 must share dtype and device, got {z1.dtype} on {z1.device} "
                         f"and {z2.dtype} on {z2.device}")
    if z1.shape[0] == 0 or z1.shape[1] == 0:
        raise ValueError(f"z1 and z2 need at least one row and one feature, got shape {tuple(z1.shape)}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    # eager only, to name the tensor; traced, the operator's own check stands (validate.tracing)
    for name, z in (("z1", z1), ("z2", z2)) if not validate.tracing() else ():
        if not bool(torch.isfinite(z).all()):
            raise ValueError(f"{name} holds non-finite values (nan or inf)")


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float, normalize: bool = True,
            gather: bool = False) -> torch.Tensor:
    """SimCLR's NT-Xent averaged over the 2N anchors of ``cat(z1, z2)``; ``z1[i]``, ``z2[i]`` are
    two views of item i, every other view is a negative.

    ``gather=True`` under torch.distributed: the negatives come from every rank (gathered with
    gradients) and the loss is the mean over this rank's anchors. With equal batches per rank,
    the ranks' mean is the loss on the concatenated batch, and DDP's averaged gradients are its
    gradients. Half-precision inputs accumulate in float32; the loss is float32 then.
    """
    check_inputs(z1, z2, temperature)
    validate.native_device("z1", z1)
    if not isinstance(normalize, bool) or not isinstance(gather, bool):
        raise ValueError(f"normalize and gather must be bools, got {normalize!r} and {gather!r}")
    half = z1.dtype in (torch.float16, torch.bfloat16)
    # normalise and take the positives in float32 for half inputs (a half sum of squares
    # overflows); the CUDA kernels then read the rows in their own dtype, the CPU ones in float32
    a1, a2 = (z1.float(), z2.float()) if half else (z1, z2)
    if normalize:
        a1, a2 = F.normalize(a1, dim=1), F.normalize(a2, dim=1)
    if z1.is_cuda:
        a1, a2 = a1.to(z1.dtype), a2.to(z1.dtype)
    n = z1.shape[0]
    candidates = [a1, a2]
    if gather and distributed.world_size() > 1:
        rank = torch.distributed.get_rank()
        parts1, parts2 = distributed.all_gather_with_grad(a1), distributed.all_gather_with_grad(a2)
        candidates += [p for q in range(len(parts1)) if q != rank for p in (parts1[q], parts2[q])]
    # lse_r = log sum_{c != r} exp(u_r . u_c / temperature) for the 2n anchors, fused (its
    # gradient is registered with the operator: musicrep.ops.registration)
    lse = native_ops().nt_xent_lse(torch.cat(candidates), 2 * n, 1.0 / temperature)
    positives = (a1.to(lse.dtype) * a2.to(lse.dtype)).sum(dim=1) / temperature
    return (lse - positives.repeat(2)).mean()
