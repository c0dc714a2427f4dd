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


def train_maybe_distributed(cfg: TrainConfig, progress: bool = True, overwrite: bool = False) -> TrainResult | None:
    rank, size = world()
    if size <= 1:
        return train(cfg, progress=progress, overwrite=overwrite)
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(device)

    def wrap(m: torch.nn.Module) -> torch.nn.Module:
        return torch.nn.parallel.DistributedDataParallel(m, device_ids=[device] if cuda else None)

    try:
        res = train(cfg, progress=progress and rank == 0, device=device, rank=rank, world=size, wrap=wrap,
                    overwrite=overwrite)
        check_ranks_agree(res, rank, size)
        return res if rank == 0 else None
    finally:
        dist.destroy_process_group()


def weights_digest(trainer) -> str:
    """sha256 of every parameter and buffer of the trainer's networks, in state-dict order."""
    import hashlib

    h = hashlib.sha256()
    for name, sd in sorted(trainer.state_dict().items()):
        if not name.startswith(("G", "D")):
            continue
        for k, v in sd.items():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def check_ranks_agree(res: TrainResult, rank: int, size: int) -> None:
    """All ranks must end with the same parameters; rank 0 records the digests in
    `ddp_ranks.json` and every rank raises if they differ."""
    from semlab import io

    # DDP broadcasts buffers (BatchNorm running statistics) from rank 0 at the start of
    # each forward; after the last step they still hold each rank's own update: take rank 0's
    for net in (getattr(res.trainer, n) for n in ("G", "D", "G_A", "G_B", "D_A", "D_B") if hasattr(res.trainer, n)):
        for b in net.buffers():
            dist.broadcast(b, 0)
    digests = [None] * size
    dist.all_gather_object(digests, weights_digest(res.trainer))
    same = len(set(digests)) == 1
    if rank == 0:
        io.write_json_atomic(res.out / "ddp_ranks.json", {"world_size": size, "digests": digests, "identical": same})
    if not same:
        raise RuntimeError(f"ranks ended with different weights: {digests}")
