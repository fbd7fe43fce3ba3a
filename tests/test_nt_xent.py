"""The fused NT-Xent against its materialised reference: values, gradients, edge sizes, bad input."""
from __future__ import annotations

import pytest
import torch

from musicrep import ops
from musicrep.ops import reference


def _views(rng: torch.Generator, n: int, d: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Two correlated views, so positives are closer than negatives as in real training."""
    base = torch.randn(n, d, generator=rng, dtype=dtype)
    z1 = base + 0.5 * torch.randn(n, d, generator=rng, dtype=dtype)
    z2 = base + 0.5 * torch.randn(n, d, generator=rng, dtype=dtype)
    return z1.requires_grad_(), z2.requires_grad_()


def _loss_and_grads(fn, z1: torch.Tensor, z2: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    a, b = z1.detach().clone().requires_grad_(), z2.detach().clone().requires_grad_()
    loss = fn(a, b, **kwargs)
    loss.backward()
    return loss.detach(), a.grad, b.grad


@pytest.mark.parametrize("n, d, temperature, normalize", [
    (1, 16, 0.5, True),        # N = 1: the positive is the only other candidate
    (3, 5, 0.1, False),
    (37, 16, 0.01, True),      # 2N = 74: not a multiple of any tile
    (100, 33, 0.07, True),
    (50, 1024, 1.0, True),
    (61, 24, 0.05, False),     # unnormalised: logits far from 1 / tau
])
def test_matches_reference_float64(rng: torch.Generator, n: int, d: int, temperature: float, normalize: bool) -> None:
    z1, z2 = _views(rng, n, d)
    got = _loss_and_grads(ops.nt_xent, z1, z2, temperature=temperature, normalize=normalize)
    want = _loss_and_grads(reference.nt_xent, z1, z2, temperature=temperature, normalize=normalize)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("normalize", [True, False])
def test_gradcheck(rng: torch.Generator, normalize: bool) -> None:
    z1, z2 = _views(rng, 5, 7)
    assert torch.autograd.gradcheck(lambda a, b: ops.nt_xent(a, b, 0.3, normalize=normalize), (z1, z2))


def test_float32_large_batch_close_to_float64_reference(rng: torch.Generator) -> None:
    """N = 2048 in float32 (2N = 4096 candidates, several tiles per thread) within 1e-5 relative."""
    z1, z2 = _views(rng, 2048, 128)
    loss, g1, g2 = _loss_and_grads(ops.nt_xent, z1.float(), z2.float(), temperature=0.1)
    want_loss, w1, w2 = _loss_and_grads(reference.nt_xent, z1, z2, temperature=0.1)
    assert loss.dtype == torch.float32
    assert abs(loss.double() - want_loss) <= 1e-5 * abs(want_loss)
    for g, w in ((g1, w1), (g2, w2)):
        assert torch.linalg.vector_norm(g.double() - w) <= 1e-5 * torch.linalg.vector_norm(w)


def test_half_precision_inputs_accumulate_in_float32(rng: torch.Generator) -> None:
    z1, z2 = (z.detach().to(torch.bfloat16) for z in _views(rng, 40, 64))
    loss, g1, _ = _loss_and_grads(ops.nt_xent, z1, z2, temperature=0.2)
    want, w1, _ = _loss_and_grads(reference.nt_xent, z1.double(), z2.double(), temperature=0.2)
    assert loss.dtype == torch.float32 and g1.dtype == torch.bfloat16
    torch.testing.assert_close(loss.double(), want, rtol=1e-5, atol=0)
    torch.testing.assert_close(g1.double(), w1, rtol=2e-2, atol=2e-4)


def test_saves_linear_memory_for_backward(rng: torch.Generator) -> None:
    """What autograd keeps between forward and backward is O(N * D), never the 2N x 2N logits."""
    n, d = 512, 16
    z1, z2 = _views(rng, n, d, torch.float32)

    def saved_bytes(fn) -> int:
        total = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn(z1, z2, 0.1)
        return total

    fused, materialised = saved_bytes(ops.nt_xent), saved_bytes(reference.nt_xent)
    assert materialised >= (2 * n) ** 2 * 4
    assert fused <= 8 * (2 * n) * (d + 1) * 4


def _bad(**changes: object) -> dict:
    args = {"z1": torch.randn(4, 8), "z2": torch.randn(4, 8), "temperature": 0.1}
    args.update(changes)
    return args


@pytest.mark.parametrize("args, match", [
    (_bad(z2=torch.randn(5, 8)), "same shape"),
    (_bad(z2=torch.randn(4, 9)), "same shape"),
    (_bad(z1=torch.randn(8)), "2-D"),
    (_bad(z2=torch.randn(2, 4, 8)), "2-D"),
    (_bad(z1=[[1.0, 2.0]]), "torch.Tensor"),
    (_bad(z1=torch.ones(4, 8, dtype=torch.int64)), "float16, bfloat16"),
    (_bad(z2=torch.randn(4, 8, dtype=torch.float64)), "share dtype"),
    (_bad(z1=torch.randn(0, 8), z2=torch.randn(0, 8)), "at least one row"),
    (_bad(z1=torch.randn(4, 0), z2=torch.randn(4, 0)), "at least one row"),
    (_bad(z1=torch.tensor([[float("nan")] * 8] * 4)), "z1 holds non-finite"),
    (_bad(z2=torch.full((4, 8), float("inf"))), "z2 holds non-finite"),
    (_bad(temperature=0.0), "temperature"),
    (_bad(temperature=-0.5), "temperature"),
    (_bad(temperature=float("nan")), "temperature"),
    (_bad(temperature="0.1"), "temperature"),
    (_bad(temperature=True), "temperature"),
])
@pytest.mark.parametrize("fn", [ops.nt_xent, reference.nt_xent], ids=["fused", "reference"])
def test_bad_input_is_a_clear_value_error(fn, args: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fn(**args)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-10), (torch.float32, 1e-5), (torch.bfloat16, 5e-2)])
def test_cuda_matches_reference(rng: torch.Generator, dtype: torch.dtype, rtol: float) -> None:
    z1, z2 = _views(rng, 150, 96)
    z1c, z2c = (z.detach().to("cuda", dtype) for z in (z1, z2))
    loss, g1, g2 = _loss_and_grads(ops.nt_xent, z1c, z2c, temperature=0.1)
    want, w1, w2 = _loss_and_grads(reference.nt_xent, z1c.double().cpu(), z2c.double().cpu(), temperature=0.1)
    torch.testing.assert_close(loss.double().cpu(), want, rtol=rtol, atol=0)
    for g, w in ((g1, w1), (g2, w2)):
        assert torch.linalg.vector_norm(g.double().cpu() - w) <= rtol * torch.linalg.vector_norm(w)


@pytest.mark.parametrize("n_candidates, n_anchors", [(300, 100), (260, 64), (129, 65)])
def test_anchor_rows_against_extra_negatives(rng: torch.Generator, n_candidates: int, n_anchors: int) -> None:
    """The core the distributed path uses: anchors are the first rows, the rest only negatives."""
    from musicrep._native import native_ops

    u = torch.nn.functional.normalize(torch.randn(n_candidates, 24, generator=rng, dtype=torch.float64), dim=1)
    weights = torch.rand(n_anchors, generator=rng, dtype=torch.float64)
    a, b = u.clone().requires_grad_(), u.clone().requires_grad_()
    got = native_ops().nt_xent_lse(a, n_anchors, 5.0)
    logits = (b[:n_anchors] @ b.T * 5.0).masked_fill(torch.eye(n_anchors, n_candidates, dtype=torch.bool), float("-inf"))
    want = torch.logsumexp(logits, dim=1)
    (got * weights).sum().backward()
    (want * weights).sum().backward()
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)
