"""A ready model embeds clips of different lengths, batched, each as it embeds alone; its
embeddings are ordinary tensors that a trained head can take; stereo is refused with a pointer
to musicrep.audio.load."""
from __future__ import annotations

import pytest
import torch

from musicrep.load import ReadyModel
from musicrep.model import Embedder
from musicrep.registry import get_component

device = "cpu"
RATE = 8000


@pytest.fixture(scope="module")
def model() -> ReadyModel:
    torch.manual_seed(1)
    frontend = get_component("frontend", "mel", sample_rate=RATE, n_fft=256, hop_length=128, n_mels=32)
    encoder = get_component("encoder", "fcn", channels=[4, 8], dim=16)
    return ReadyModel(Embedder(frontend, encoder, window=1.0, hop=0.5, windowing="start"))


def _clips(seconds: list[float], seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [0.3 * torch.randn(int(s * RATE), generator=g) for s in seconds]


def test_clips_embed_the_same_batched_as_alone(model: ReadyModel) -> None:
    clips = _clips([0.3, 10.0, 1.5, 3.0, 0.7, 6.2])
    alone = torch.cat([model([c]) for c in clips])
    torch.testing.assert_close(model(clips), alone, rtol=0, atol=1e-5)
    # the same clips zero-padded into [B, T] with their lengths
    padded = torch.zeros(len(clips), max(len(c) for c in clips))
    for i, c in enumerate(clips):
        padded[i, :len(c)] = c
    lengths = torch.tensor([len(c) for c in clips])
    torch.testing.assert_close(model(padded, lengths=lengths), alone, rtol=0, atol=1e-5)
    # a 1.5 s clip padded to 3 s without its length is another clip: its silence is embedded too
    assert not torch.allclose(model(padded[2:3, :3 * RATE]), alone[2:3], atol=1e-3)


def test_equal_length_batch_is_unchanged(model: ReadyModel) -> None:
    """``[B, T]`` without lengths: every row is a whole clip, as the pooled timeline gives."""
    wave = torch.stack(_clips([2.0, 2.0, 2.0], seed=3))
    windows, offsets = model.timeline(wave)
    torch.testing.assert_close(model(wave), windows.mean(dim=1))
    assert windows.shape[:2] == (3, len(offsets))


def test_embeddings_are_ordinary_tensors(model: ReadyModel) -> None:
    head = torch.nn.Linear(model.dim, 3)
    z = model(_clips([1.0, 2.5], seed=4))
    assert not z.is_inference() and not z.requires_grad
    head(z).sum().backward()
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
    windows, offsets = model.timeline(torch.stack(_clips([1.0, 1.0], seed=5)))
    assert not windows.is_inference() and not offsets.is_inference()


@pytest.mark.parametrize("stereo", [torch.zeros(2 * RATE, 2), torch.zeros(3, 2, RATE)])
def test_stereo_points_to_the_loader(model: ReadyModel, stereo: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"musicrep\.audio\.load"):
        model(stereo)
    with pytest.raises(ValueError, match=r"musicrep\.audio\.load"):
        model([stereo])


@pytest.mark.parametrize("lengths, words", [([5, 0], "lengths"), ([5], "lengths"), ([5, 10**9], "lengths")])
def test_bad_lengths_are_named(model: ReadyModel, lengths: list[int], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        model(torch.zeros(2, RATE), lengths=lengths)
