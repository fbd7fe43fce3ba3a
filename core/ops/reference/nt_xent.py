"""NT-Xent in plain PyTorch: the whole 2N x 2N similarity matrix, then a cross-entropy per row."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from musicrep.ops.nt_xent import check_inputs


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float, normalize: bool = True) -> torch.Tensor:
    """SimCLR's NT-Xent over the 2N anchors of ``cat(z1, z2)``, materialised (the tests' oracle)."""
    check_inputs(z1, z2, temperature)
    n = z1.shape[0]
    z = torch.cat([z1, z2])
    if normalize:
        z = F.normalize(z, dim=1)
    logits = z @ z.T / temperature
    self_pairs = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_pairs, float("-inf"))
    positives = (torch.arange(2 * n, device=z.device) + n) % (2 * n)
    return F.cross_entropy(logits, positives)
