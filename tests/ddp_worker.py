"""A pre-training process for the DDP test (imported by spawned children)."""
from __future__ import annotations

import os
from pathlib import Path

import torch


def pretrain_rank(rank: int, world_size: int, port: int, out: str, seed: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from musicrep.objective import TrainingData
    from musicrep.plugins.objectives import Supervised
    from musicrep.train import train
    from test_train import settings, setup

    embedder, _, sources = setup(seed)
    summary = train(embedder, Supervised(Supervised.Config()), [], sources, TrainingData("multiclass", 3),
                    settings(seed, 4), Path(out), device=torch.device("cpu"), key="ddp", progress=False)
    params = {n: p.detach() for n, p in embedder.named_parameters()}  # BN running stats stay per rank
    torch.save({"state": params, "summary": summary}, Path(out) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def embed_rank(rank: int, world_size: int, port: int, out: str, seed: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from musicrep.distributed import barrier, init_from_env
    from musicrep.embed import extract
    from musicrep.embed import write_view
    from test_store import make_embedder
    from pipeline_fakes import ToneTask

    init_from_env(torch.device("cpu"))
    task = ToneTask(ToneTask.Config(per_class=5, seconds=1.0))
    extract(make_embedder(seed), task, Path(out) / "view.h5", {"seed": seed}, store=Path(out) / "store",
            batch_size=4, progress=False, shard=(rank, world_size))
    barrier()
    if rank == 0:  # every rank wrote its own segment; the view reads them together
        from musicrep.embed import content_keys

        write_view(task, content_keys(task), Path(out) / "store", Path(out) / "view.h5")
    torch.distributed.destroy_process_group()


def embed_catalog_rank(rank: int, world_size: int, port: int, model: str, store: str, source: str) -> None:
    """``musicrep embed`` as one rank of ``torchrun`` runs it; its summary in ``rank<r>.json``."""
    import json

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from musicrep.embed_catalog import embed_catalog

    summary = embed_catalog(model, Path(store), Path(source), window=0.5, hop=0.25, num_workers=0, progress=False)
    (Path(store).parent / f"rank{rank}.json").write_text(json.dumps(summary))
    torch.distributed.destroy_process_group()
