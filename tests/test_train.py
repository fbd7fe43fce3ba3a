"""Pre-training: it learns, and a killed run resumes to the same model."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from musicrep.model import Embedder
from musicrep.objective import Objective, TrainingData
from musicrep.plugins.encoders import FCN
from musicrep.plugins.objectives import Supervised
from musicrep.tasks import encode_target
from musicrep.train import Source, TrainSettings, train
from pipeline_fakes import FrameFrontend, ToneTask


class Crash(Exception):
    pass


class CrashAt(nn.Module):
    """A wave 'augmentation' that stops the run at a given call, as a kill would."""

    domain = "wave"

    def __init__(self, at: int) -> None:
        super().__init__()
        self.calls, self.at = 0, at

    def forward(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.at:
            raise Crash
        return x + 0.01 * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def setup(seed: int):
    torch.manual_seed(seed)
    embedder = Embedder(FrameFrontend(FrameFrontend.Config()), FCN(FCN.Config(channels=[4, 8], dim=16)),
                        window=0.5, hop=0.25)
    task = ToneTask(ToneTask.Config(per_class=8, seconds=1.0))
    sources = [Source(task, it, encode_target(task.kind, task.label_names, it.labels)) for it in task.items()]
    return embedder, task, sources


def settings(seed: int, steps: int) -> TrainSettings:
    return TrainSettings(steps=steps, batch_size=8, lr=3e-3, weight_decay=0.0, warmup_steps=2, grad_clip=1.0,
                         clip_seconds=0.5, checkpoint_every=3, num_workers=0, precision="fp32", seed=seed)


def test_killed_training_resumes_to_the_same_model(tmp_path: Path) -> None:
    seed = int(torch.randint(0, 10_000, ()))
    data = TrainingData("multiclass", 3)
    whole, _, sources = setup(seed)
    train(whole, Supervised(Supervised.Config()), [CrashAt(at=-1)], sources, data, settings(seed, 10),
          tmp_path / "whole", device=torch.device("cpu"), key="k", progress=False)

    resumed, _, sources = setup(seed)
    with pytest.raises(Crash):
        train(resumed, Supervised(Supervised.Config()), [CrashAt(at=8)], sources, data, settings(seed, 10),
              tmp_path / "resumed", device=torch.device("cpu"), key="k", progress=False)
    assert torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["step"] == 6
    fresh, _, sources = setup(seed)  # a new process: weights at init, state from the checkpoint
    summary = train(fresh, Supervised(Supervised.Config()), [CrashAt(at=-1)], sources, data, settings(seed, 10),
                    tmp_path / "resumed", device=torch.device("cpu"), key="k", progress=False)
    assert summary["resumed_from"] == 6
    a, b = whole.state_dict(), fresh.state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)
    # a checkpoint made for another configuration is not resumed from
    other, _, sources = setup(seed)
    summary = train(other, Supervised(Supervised.Config()), [], sources, data, settings(seed, 2),
                    tmp_path / "resumed", device=torch.device("cpu"), key="other", progress=False)
    assert summary["resumed_from"] == 0


class EmaTarget(Objective):
    """Uses every optional part of the objective contract and records how the trainer calls it."""

    views = 2
    needs_features = True

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def setup(self, dim: int, data: TrainingData) -> None:
        self.head = nn.Linear(dim, 1)

    def attach(self, encoder: nn.Module) -> None:
        self.calls.append(("attach",))
        self.target = copy.deepcopy(encoder).requires_grad_(False)

    def after_step(self, step: int, encoder: nn.Module) -> None:
        self.calls.append(("after_step", step, torch.is_grad_enabled()))
        for t, o in zip(self.target.parameters(), encoder.parameters()):
            t.lerp_(o, 0.5)

    def forward(self, embeddings, targets, features=None):
        self.calls.append(("forward", [tuple(f.shape) for f in features]))
        with torch.no_grad():
            goal = [self.target(f) for f in features]
        return sum((self.head(e) - self.head(g)).pow(2).mean() + (e - g).pow(2).mean()
                   for e, g in zip(embeddings, reversed(goal)))


def test_objective_hooks_attach_features_and_ema_resume(tmp_path: Path) -> None:
    seed = int(torch.randint(0, 10_000, ()))
    data = TrainingData(None, 0)
    whole, _, sources = setup(seed)
    objective = EmaTarget()
    train(whole, objective, [CrashAt(at=-1)], sources, data, settings(seed, 5), tmp_path / "whole",
          device=torch.device("cpu"), key="k", progress=False)
    frames = whole.frontend(torch.zeros(1, 4000)).shape[1:]   # 0.5 s crops at 8 kHz
    assert objective.calls[0] == ("attach",)
    assert objective.calls[1:] == [c for step in range(1, 6)
                                   for c in (("forward", [(8, *frames)] * 2), ("after_step", step, False))]
    # the EMA target is checkpointed and resumed with the run: a killed run ends at the same target
    resumed, _, sources = setup(seed)
    with pytest.raises(Crash):
        train(resumed, EmaTarget(), [CrashAt(at=5)], sources, data, settings(seed, 5), tmp_path / "resumed",
              device=torch.device("cpu"), key="k", progress=False)
    fresh, _, sources = setup(seed)
    again = EmaTarget()
    summary = train(fresh, again, [CrashAt(at=-1)], sources, data, settings(seed, 5), tmp_path / "resumed",
                    device=torch.device("cpu"), key="k", progress=False)
    assert summary["resumed_from"] == 3 and [c[1] for c in again.calls if c[0] == "after_step"] == [4, 5]
    for a, b in zip(objective.target.state_dict().values(), again.target.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_two_gloo_processes_train_one_model(tmp_path: Path) -> None:
    import socket

    import torch.multiprocessing as mp
    from ddp_worker import pretrain_rank

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    seed = int(torch.randint(0, 10_000, ()))
    mp.spawn(pretrain_rank, args=(2, port, str(tmp_path), seed), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0["summary"]["steps"] == 4
    initial, _, _ = setup(seed)
    for name, value in rank0["state"].items():
        torch.testing.assert_close(value, rank1["state"][name], msg=name)  # DDP kept the ranks in step
    trained = [n for n, v in rank0["state"].items() if v.is_floating_point()
               and not torch.equal(v, dict(initial.named_parameters())[n])]
    assert trained, "training changed no weight"
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 4


class BadTone:
    """A task whose items all decode, but one: its file is bad audio."""

    def __init__(self, task, bad_id: str) -> None:
        self.task, self.bad_id = task, bad_id
        self.kind, self.label_names = task.kind, task.label_names

    def audio(self, item, sample_rate):
        from musicrep.audio import BadAudioError

        if item.id == self.bad_id:
            raise BadAudioError(f"/data/{item.id}.wav", "not readable as audio (format not recognised)")
        return self.task.audio(item, sample_rate)


def test_the_last_progress_line_shows_the_final_loss(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    seed = int(torch.randint(0, 10_000, ()))
    embedder, _, sources = setup(seed)
    summary = train(embedder, Supervised(Supervised.Config()), [], sources, TrainingData("multiclass", 3),
                    settings(seed, 7), tmp_path, device=torch.device("cpu"), key="k", label="pretrain m")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("pretrain m: 7/7")]
    assert len(lines) == 1 and f"loss={summary['final_loss']:.4f}" in lines[0]


def test_a_long_warmup_is_cut_to_a_quarter_of_a_short_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from dataclasses import replace

    seed = int(torch.randint(0, 10_000, ()))
    embedder, _, sources = setup(seed)
    rates = []
    run = replace(settings(seed, 8), warmup_steps=100)
    train(embedder, Supervised(Supervised.Config()), [], sources, TrainingData("multiclass", 3), run, tmp_path,
          device=torch.device("cpu"), key="k", progress=False, label="pretrain m",
          notify=lambda hook, **kw: rates.append(kw["metrics"]["lr"]) if hook == "musicrep_on_train_step" else None)
    assert "pretrain m: warmup_steps = 100 is over 25% of the 8 steps; warming up over 2" in capsys.readouterr().err
    assert max(rates) == pytest.approx(run.lr)  # the run reaches its learning rate


@pytest.mark.parametrize("policy", ["skip", "fail"])
def test_pretraining_follows_the_bad_audio_policy(tmp_path: Path, capsys: pytest.CaptureFixture, policy: str) -> None:
    """A bad clip stops pre-training under "fail" (one error naming the file); under "skip" it is
    named once per run in musicrep's words, however often batches meet it, and no Python
    warning points at a torch source line."""
    import warnings
    from dataclasses import replace

    from musicrep.audio import BadAudioError

    seed = int(torch.randint(0, 10_000, ()))
    embedder, task, sources = setup(seed)
    bad = BadTone(task, sources[0].item.id)
    sources = [Source(bad, s.item, s.target) for s in sources]
    run = replace(settings(seed, 6), on_bad_audio=policy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if policy == "fail":
            with pytest.raises(BadAudioError, match=rf"/data/{sources[0].item.id}\.wav: not readable as audio"):
                train(embedder, Supervised(Supervised.Config()), [], sources, TrainingData("multiclass", 3), run,
                      tmp_path, device=torch.device("cpu"), key="k", progress=False)
            return
        for folder in ("a", "b"):  # two models of one run meet the same file
            train(embedder, Supervised(Supervised.Config()), [], sources, TrainingData("multiclass", 3), run,
                  tmp_path / folder, device=torch.device("cpu"), key="k", progress=False, label="pretrain m")
    err = capsys.readouterr().err
    assert err.count(f"/data/{sources[0].item.id}.wav") == 1
    assert f"musicrep: warning: pretrain m: skipping bad audio /data/{sources[0].item.id}.wav" in err
