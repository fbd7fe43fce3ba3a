"""The trainer: supervised or contrastive pre-training of a front end + encoder (the pretrain
stage, ``musicrep.pipeline.pretrain``, decides what to train and caches the result).

Decoding and cropping happen in data-loader workers; augmentation, the front end and the
encoder run on the device. Every random draw is a function of (seed, step), and the data
order of (seed, epoch), so a run killed and resumed from its last checkpoint ends with the
same model as an uninterrupted one. Checkpoints are written atomically.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from musicrep import atomic
from musicrep.accel import autotune_fixed_shapes, to_device
from musicrep.audio import BadAudioError, random_crop
from musicrep.augment import Chain
from musicrep.distributed import barrier, init_from_env, is_main, world
from musicrep.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from musicrep.errors import MusicrepError
from musicrep.hashing import config_hash
from musicrep.interrupts import stop_if_interrupted
from musicrep.loader_workers import init_worker
from musicrep.model import Embedder
from musicrep.objective import Objective, TrainingData
from musicrep.rundir import ModelDir, run_of_checkpoint
from musicrep.progress import progress_bar
from musicrep.text import for_terminal


@dataclass
class TrainSettings:
    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_steps: int
    grad_clip: float
    clip_seconds: float
    checkpoint_every: int
    num_workers: int
    precision: str
    seed: int
    #: ``[embed] on_bad_audio``: a clip that gives no clean audio stops pre-training ("fail") or
    #: is left out of its batch, named once per run ("skip")
    on_bad_audio: str = "skip"


@dataclass(frozen=True)
class Source:
    """One pre-training clip: its task (which decodes it), its item, and its target vector."""

    task: Any
    item: Any
    target: np.ndarray | None


class ClipDataset(Dataset):
    """``views`` random crops of a clip, seeded by (seed, epoch, index): read by seeking where the
    task's files allow (the decode cost follows the crop length, not the track's), else cut from
    the decoded clip."""

    def __init__(self, sources: list[Source], sample_rate: int, clip_samples: int, views: int, seed: int) -> None:
        self.sources, self.sample_rate, self.clip_samples = sources, sample_rate, clip_samples
        self.views, self.seed = views, seed

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, key: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None] | None:
        index, epoch = key
        source = self.sources[index]
        rng = np.random.default_rng([self.seed, epoch, index])
        try:
            seek = getattr(source.task, "crops", None)  # a task of another shape may only decode
            crops = seek and seek(source.item, self.sample_rate, self.clip_samples / self.sample_rate, self.views, rng)
            if crops is None:
                wave = np.asarray(source.task.audio(source.item, self.sample_rate), dtype=np.float32)
                if wave.size == 0:
                    return None
                crops = np.stack([random_crop(wave, self.clip_samples, rng, short="tile") for _ in range(self.views)])
        except BadAudioError as exc:  # sent back (it pickles intact): the main process applies the policy
            return exc
        return np.asarray(crops, dtype=np.float32), source.target


def collate(batch: list[Any]) -> tuple[torch.Tensor | None, torch.Tensor | None, list[BadAudioError]]:
    """The batch's crops and targets (None when every clip was bad), and its bad clips' errors."""
    bad = [b for b in batch if isinstance(b, BadAudioError)]
    batch = [b for b in batch if b is not None and not isinstance(b, BadAudioError)]
    if not batch:
        return None, None, bad
    waves = torch.from_numpy(np.stack([b[0] for b in batch]))
    targets = None if batch[0][1] is None else torch.from_numpy(np.stack([b[1] for b in batch]))
    return waves, targets, bad


#: the bad files named so far, per run (the folder holding its models' folders): each is named
#: once per run, however many models and epochs meet it
_NAMED_BAD_AUDIO: set[tuple[str, str]] = set()


def apply_bad_audio_policy(errors: list[BadAudioError], mode: str, label: str, run: Path) -> None:
    """Under "fail" the first bad clip stops pre-training (its error names the file); under
    "skip" each bad file is named once per ``run`` on stderr, in musicrep's words."""
    for error in errors:
        if mode == "fail":
            raise BadAudioError(error.path, f"{error.reason} (pre-training, with [embed] on_bad_audio = \"fail\")")
        if (str(run), error.path) not in _NAMED_BAD_AUDIO:
            _NAMED_BAD_AUDIO.add((str(run), error.path))
            print(for_terminal(f"musicrep: warning: {label}: skipping bad audio {error.path}: {error.reason}"),
                  file=sys.stderr, flush=True)


#: warm-up may take at most this share of a run's steps: ``warmup_steps = 100`` (the default)
#: in a 20-step run would end it at a fifth of the learning rate
WARMUP_SHARE = 0.25


def warmup_for(settings: TrainSettings) -> int:
    """The warm-up steps a run uses: ``warmup_steps``, cut to ``WARMUP_SHARE`` of the steps (one
    step at least: a tiny run may keep a one-step warm-up)."""
    return min(settings.warmup_steps, max(1, int(settings.steps * WARMUP_SHARE)))


class EpochBatches(Sampler):
    """Batches of (index, epoch) from a per-epoch seeded permutation, from any step on.

    Each rank takes its own slice of every global batch, so under DDP the ranks see disjoint
    clips and together the same data as one process with the global batch.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start_step: int, rank: int, world_size: int) -> None:
        self.n, self.batch, self.seed, self.start = n, batch_size, seed, start_step
        self.rank, self.world = rank, world_size
        self.global_batch = batch_size * world_size
        self.steps_per_epoch = n // self.global_batch
        if self.steps_per_epoch == 0:
            raise MusicrepError(f"pre-training has {n} clips but one step needs {self.global_batch} "
                                f"(batch_size x processes); lower batch_size or add data")

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start
        while True:
            epoch, position = divmod(step, self.steps_per_epoch)
            order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            first = position * self.global_batch + self.rank * self.batch
            yield [(int(i), epoch) for i in order[first:first + self.batch]]
            step += 1


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class TrainModule(nn.Module):
    """Everything with parameters in one module, so DDP and the optimizer see it whole."""

    def __init__(self, embedder: Embedder, objective: Objective, augmentations: list[nn.Module]) -> None:
        super().__init__()
        self.embedder, self.objective = embedder, objective
        self.augment = Chain(augmentations)

    def forward(self, waves: torch.Tensor, targets: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
        b, views, t = waves.shape
        x = waves.transpose(0, 1).reshape(views * b, t)  # view-major: [view0 batch, view1 batch]
        features = self.augment(x, self.embedder.frontend, generator)
        embeddings = self.embedder.encoder(features)
        if getattr(self.objective, "needs_features", False):
            return self.objective(list(embeddings.split(b)), targets, features=list(features.split(b)))
        return self.objective(list(embeddings.split(b)), targets)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any] | None:
    """The checkpoint at ``path``; None when there is none, or when it cannot be read whole.

    Checkpoints are written atomically, so an unreadable one was damaged from outside (a disk
    fault, a copy cut short): it is named on stderr and the work it held is done again.
    """
    if not path.exists():
        return None
    try:
        state = read_checkpoint(path, device)
    except CheckpointError as exc:  # named, and its work done again: never loaded as it is
        print(f"musicrep: warning: {exc}; ignored, its work is done again", file=sys.stderr, flush=True)
        return None
    return state if isinstance(state, dict) else None


def train(embedder: Embedder, objective: Objective, augmentations: list[nn.Module], sources: list[Source],
          data: TrainingData, settings: TrainSettings, out_dir: Path, *, device: torch.device,
          key: str, notify=None, progress: bool = True, label: str = "pretrain") -> dict[str, Any]:
    """Pre-train in place; resumes from the model folder ``out_dir``'s last checkpoint when its key
    matches, and says so on stderr (``label`` starts each line, e.g. ``pretrain <model>``)."""
    distributed = init_from_env(device)
    rank, world_size = world()
    out_dir.mkdir(parents=True, exist_ok=True)
    objective.setup(embedder.encoder.dim, data)
    # attach/after_step are optional: an objective that does not subclass Objective may lack them
    attach, after_step = (getattr(objective, h, None) for h in ("attach", "after_step"))
    if attach is not None:
        attach(embedder.encoder)
    module = to_device(TrainModule(embedder, objective, augmentations), device, training=True)
    optimizer = torch.optim.AdamW(module.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    warmup = warmup_for(settings)
    if warmup < settings.warmup_steps and is_main():
        print(f"{label}: warmup_steps = {settings.warmup_steps} is over {WARMUP_SHARE:.0%} of the {settings.steps} "
              f"steps; warming up over {warmup}", file=sys.stderr, flush=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup, settings.steps))
    start, loss_value = 0, float("nan")
    last = ModelDir(out_dir).last
    state = load_checkpoint(last, device)
    if state is not None and state.get("key") == key:
        module.load_state_dict(state["module"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, loss_value = state["step"], state.get("loss", loss_value)
    if state is not None and is_main():
        say_checkpoint(label, start, settings.steps, state.get("key") == key, last)
    runner = nn.parallel.DistributedDataParallel(module) if distributed else module
    if notify and is_main():
        notify("musicrep_on_train_start", start_step=start, steps=settings.steps)

    clip_samples = round(settings.clip_seconds * embedder.sample_rate)
    dataset = ClipDataset(sources, embedder.sample_rate, clip_samples, objective.views, settings.seed)
    sampler = EpochBatches(len(sources), settings.batch_size, settings.seed, start, rank, world_size)
    loader = iter(DataLoader(dataset, batch_sampler=sampler, num_workers=settings.num_workers, collate_fn=collate,
                             persistent_workers=settings.num_workers > 0, worker_init_fn=init_worker))
    autocast = settings.precision == "bf16" or (settings.precision == "auto" and device.type == "cuda")

    def save(path: Path, step: int) -> None:
        if not is_main():
            return
        save_checkpoint({"key": key, "step": step, "loss": loss_value, "module": module.state_dict(),
                         "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, path)

    bar = progress_bar(total=settings.steps, initial=start, desc=label, unit="step", file=sys.stderr,
               disable=not (progress and is_main()), dynamic_ncols=True)
    started, clips = time.perf_counter(), 0
    module.train()
    restore_autotune = autotune_fixed_shapes(device)  # the crops have one shape
    try:
        for step in range(start, settings.steps):
            stop_if_interrupted()
            waves, targets, bad = next(loader)
            apply_bad_audio_policy(bad, settings.on_bad_audio, label, out_dir.resolve().parent)
            if waves is None:
                raise MusicrepError(f"{label}: a whole pre-training batch was bad audio; check the data")
            waves = waves.to(device, non_blocking=True)
            targets = None if targets is None else targets.to(device)
            torch.manual_seed(settings.seed * 1_000_003 + step)  # dropout and the like
            generator = torch.Generator(device=device).manual_seed(settings.seed * 7_919 + step)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = runner(waves, targets, generator)
            if not torch.isfinite(loss):
                raise MusicrepError(f"pre-training diverged at step {step} (loss {loss.item()}); "
                                    f"lower lr or check the data")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(module.parameters(), settings.grad_clip)
            optimizer.step()
            scheduler.step()
            if after_step is not None:
                with torch.no_grad():
                    after_step(step + 1, embedder.encoder)
            loss_value = loss.item()
            clips += len(waves) * world_size
            rate = clips / (time.perf_counter() - started)
            bar.set_postfix(loss=f"{loss_value:.4f}", clips_s=f"{rate:.1f}", refresh=False)
            bar.update(1)  # after the postfix: the line it writes shows this step's loss
            if notify and is_main():
                notify("musicrep_on_train_step", step=step + 1,
                       metrics={"loss": loss_value, "lr": scheduler.get_last_lr()[0], "clips_per_s": rate})
            if (step + 1) % settings.checkpoint_every == 0 and step + 1 < settings.steps:
                save(last, step + 1)
    finally:
        bar.close()
        restore_autotune()
    save(last, settings.steps)
    barrier()
    return {"steps": settings.steps, "resumed_from": start, "final_loss": loss_value,
            "clips_per_s": clips / max(time.perf_counter() - started, 1e-9)}


def say_checkpoint(label: str, start: int, steps: int, same_key: bool, checkpoint: Path) -> None:
    """What a found checkpoint means for this run, named by its path in the run directory."""
    run = run_of_checkpoint(checkpoint)
    shown = checkpoint.relative_to(run.root) if run is not None else checkpoint
    message = (f"resuming from step {start} of {steps} ({shown})" if same_key
               else f"{shown} was made with another configuration; starting from step 0")
    print(f"{label}: {message}", file=sys.stderr, flush=True)


def training_key(description: dict[str, Any]) -> str:
    return config_hash(description)
