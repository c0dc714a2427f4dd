"""Data-parallel training: `torchrun --nproc_per_node N -m semlab train ...`.

torchrun sets RANK / WORLD_SIZE / MASTER_ADDR; each process trains on its shard of every
epoch (the same split a DistributedSampler makes: every WORLD_SIZE-th item of the
epoch's permutation), gradients are averaged by DistributedDataParallel (gloo on the
CPU, nccl on GPUs), and rank 0 alone logs and writes checkpoints.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from semlab.train.config import TrainConfig
from semlab.train.loop import TrainResult, train


def world() -> tuple[int, int]:
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def train_maybe_distributed(cfg: TrainConfig, progress: bool = True) -> TrainResult | None:
    rank, size = world()
    if size <= 1:
        return train(cfg, progress=progress)
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(device)

    def wrap(m: torch.nn.Module) -> torch.nn.Module:
        return torch.nn.parallel.DistributedDataParallel(m, device_ids=[device] if cuda else None,
                                                         broadcast_buffers=True)

    try:
        res = train(cfg, progress=progress and rank == 0, device=device, rank=rank, world=size, wrap=wrap)
        dist.barrier()
        return res if rank == 0 else None
    finally:
        dist.destroy_process_group()
