"""The training loop: seeded, resumable from the last checkpoint, guarded against NaNs.

The run folder (`cfg.out`) is locked while training (`semlab.locks`). A non-empty folder
that is not a run folder (no config.json or checkpoint that `train` wrote) is refused, so
a user's files are never overwritten; `overwrite=True` starts fresh there instead of
resuming (only train's own files are replaced). Temp files of a killed run (a partial
checkpoint) are removed when it resumes.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from semlab import io
from semlab.integrity import is_temp_file, remove_stale_temp
from semlab.locks import FolderLock, is_lock_file
from semlab.train.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from semlab.train.config import TrainConfig
from semlab.train.data import ArrayData, batch_indices, epoch_order, steps_per_epoch

LOG_FIELDS = ("step", "epoch", "lr", "seconds", "loss_D", "loss_G_GAN", "loss_G_L1", "loss_G_FM",
              "loss_D_A", "loss_D_B", "loss_G_A", "loss_G_B", "loss_cycle_A", "loss_cycle_B",
              "loss_idt_A", "loss_idt_B")


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; nothing was saved after the last good checkpoint."""


@dataclass
class TrainResult:
    out: Path
    steps: int
    epochs_done: int
    log: list[dict] = field(default_factory=list)
    generator_path: Path | None = None
    resumed_from: str | None = None
    trainer: object | None = field(default=None, repr=False)


def to_tensors(data: ArrayData, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 arrays -> one-hot masks (B, C, H, W) in {0, 1} (the trainer's `encode_onehot`
    puts them in its mask domain) and images in [-1, 1] (B, 1, H, W)."""
    from semlab.models import one_hot

    img = torch.from_numpy(data.images[idx]).float().div_(127.5).sub_(1.0)[:, None]
    return one_hot(data.masks[idx]), img


def trainer_class(model: str):
    """The trainer class of a model name ("pix2pix", "cyclegan"): the one place that maps
    the name to what the model is (its `encode_mask`, `paired`, `generate_train_mode`)."""
    if model == "pix2pix":
        from semlab.train.pix2pix import Pix2PixTrainer

        return Pix2PixTrainer
    if model == "cyclegan":
        from semlab.train.cyclegan import CycleGANTrainer

        return CycleGANTrainer
    raise ValueError(f"model {model!r}; valid: pix2pix, cyclegan")


def make_trainer(cfg: TrainConfig, size: int, device="cpu"):
    return trainer_class(cfg.model)(cfg, size, device)


def _setup(cfg: TrainConfig) -> None:
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


# options that may change between a run and its resumption (schedule length, bookkeeping)
_FREE = ("n_epochs", "n_epochs_decay", "max_steps", "threads", "extra", "checkpoint_every",
         "keep_checkpoints", "sample_every_epochs", "n_samples")


def _check_config(out: Path, cfg: TrainConfig) -> None:
    """A run folder belongs to one configuration (the schedule length may grow)."""
    p = out / "config.json"
    mine = cfg.to_dict()
    if p.is_file():
        old = json.loads(p.read_text())
        a = {k: v for k, v in old.items() if k not in _FREE}
        b = {k: v for k, v in mine.items() if k not in _FREE}
        if a != b:
            diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            raise ValueError(f"{out} holds a training run with other settings ({', '.join(diff)}); "
                             "choose another output folder")
    io.write_json_atomic(p, mine)


# what `train` writes into a run folder (removed by overwrite=True before a fresh start)
RUN_FILES = ("config.json", "log.csv", "generator.pt", "ddp_ranks.json")


def is_run_folder(out) -> bool:
    """True if `out` holds a checkpoint or a config.json that `train` wrote."""
    out = Path(out)
    if list_checkpoints(out / "checkpoints"):
        return True
    try:
        cfg = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and {"model", "dataset", "out", "n_epochs"} <= set(cfg)


def check_run_folder(out, *, overwrite: bool = False) -> None:
    """Refuse (ValueError) an existing, non-empty `out` that is not a run folder, unless `overwrite`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file, not a run folder: choose another --out")
    if overwrite or not out.is_dir() or is_run_folder(out):
        return
    names = sorted(p.name for p in out.iterdir() if not is_lock_file(p.name) and not is_temp_file(p.name))
    if names:
        more = f" and {len(names) - 5} more" if len(names) > 5 else ""
        raise ValueError(f"{out} is not empty and is not a semlab training run (no config.json or checkpoint "
                         f"written by `semlab train`; it holds {', '.join(names[:5])}{more}); refusing to write "
                         "into it: choose another --out, or pass --overwrite (overwrite=True) to train there from "
                         "scratch")


def _start_fresh(out: Path) -> list[Path]:
    """overwrite=True: remove what an earlier run wrote (checkpoints and RUN_FILES), nothing else."""
    gone = [p for p in list_checkpoints(out / "checkpoints")] + [out / n for n in RUN_FILES if (out / n).is_file()]
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


def train(cfg: TrainConfig, *, progress: bool = True, device: str | None = None, rank: int = 0, world: int = 1,
          wrap=None, on_epoch=None, overwrite: bool = False) -> TrainResult:
    """Train (or resume) the model of `cfg` into `cfg.out` (see the package docstring).

    `device` defaults to "cuda" when available, else "cpu". `rank`/`world`/`wrap` are
    set by the distributed launcher (`semlab.train.ddp`);
    `on_epoch(trainer, epoch, log)` is called after each epoch (notebook previews).
    A non-empty `cfg.out` that is not a run folder is refused unless `overwrite`, which
    also starts afresh (no resume) in a run folder. Rank 0 locks the folder."""
    if not cfg.out:
        raise ValueError("TrainConfig.out (the run folder) is required")
    out = Path(cfg.out)
    check_run_folder(out, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    lock = FolderLock(out).acquire() if rank == 0 else None
    try:
        if rank == 0:
            remove_stale_temp(out)  # a killed run's partial checkpoint or log
            if overwrite:
                _start_fresh(out)
        return _train(cfg, out, progress=progress, device=device, rank=rank, world=world, wrap=wrap,
                      on_epoch=on_epoch, fresh=overwrite)
    finally:
        if lock is not None:
            lock.release()


def _train(cfg: TrainConfig, out: Path, *, progress: bool, device: str | None, rank: int, world: int,
           wrap, on_epoch, fresh: bool) -> TrainResult:
    if device is None:  # a GPU when torch sees one, else the CPU
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if rank == 0:
        _check_config(out, cfg)
    _setup(cfg)
    data = ArrayData.from_dataset(cfg.dataset, "train")
    if data.masks is None:
        raise ValueError(f"{cfg.dataset}: no masks; training needs a labelled dataset (see `semlab segment`)")
    torch.manual_seed(cfg.seed)  # network initialisation
    trainer = make_trainer(cfg, data.size, device)
    ckdir = out / "checkpoints"
    epoch, step_in_epoch, global_step, log = 0, 0, 0, []
    resumed = None
    ck = None if fresh else latest_checkpoint(ckdir)  # other ranks must not read what rank 0 removes
    if ck is not None:
        st = load_checkpoint(ck)
        trainer.load_state_dict(st["trainer"])
        epoch, step_in_epoch, global_step = int(st["epoch"]), int(st["step_in_epoch"]), int(st["step"])
        log = [dict(zip(st["log_fields"], row)) for row in st["log"]]
        torch.set_rng_state(st["rng_torch"])
        resumed = ck.name
    if wrap is not None:
        trainer.wrap(wrap)
    spe = steps_per_epoch(len(data), cfg.batch_size, world)
    total_epochs = cfg.n_epochs + cfg.n_epochs_decay
    last_good = ck

    def save(ep: int, sie: int) -> Path | None:
        nonlocal last_good
        if rank != 0:
            return None
        state = {"format": "semlab-train-1", "config": cfg.to_dict(), "size": data.size, "epoch": ep,
                 "step_in_epoch": sie,
                 "step": global_step, "trainer": trainer.state_dict(), "rng_torch": torch.get_rng_state(),
                 "log_fields": list(LOG_FIELDS),
                 "log": [[r.get(k) for k in LOG_FIELDS] for r in log]}
        last_good = save_checkpoint(state, ckdir, global_step, keep=cfg.keep_checkpoints)
        io.write_csv_atomic(out / "log.csv", log, list(LOG_FIELDS))
        return last_good

    bar = tqdm(total=total_epochs * spe, initial=epoch * spe + step_in_epoch, disable=not progress or rank != 0,
               desc=f"{cfg.model} {out.name}", unit="step")
    try:
        if cfg.max_steps is not None and global_step >= cfg.max_steps:  # resumed at the step limit
            return TrainResult(out, global_step, epoch, log, None, resumed, trainer)
        while epoch < total_epochs:
            order = epoch_order(len(data), cfg.seed, epoch, 0, rank, world)
            # CycleGAN is unpaired: images come in an independent order
            order_b = order if trainer.paired else epoch_order(len(data), cfg.seed, epoch, 1, rank, world)
            for s in range(step_in_epoch, spe):
                idx = batch_indices(order, cfg.batch_size, s)
                mask, img = to_tensors(data, idx)
                if order_b is not order:
                    img = to_tensors(data, batch_indices(order_b, cfg.batch_size, s))[1]
                t = time.perf_counter()
                losses = trainer.train_step(mask, img)
                if cfg.extra.get("step_delay_s"):  # slows training down (the kill-and-resume test)
                    time.sleep(float(cfg.extra["step_delay_s"]))
                bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
                if bad:
                    raise TrainingDiverged(
                        f"non-finite loss at step {global_step + 1} (epoch {epoch}): {bad}; nothing was saved "
                        f"after the last good checkpoint {last_good or '(none yet)'}. Try precision='fp32', a lower "
                        "lr, or another gan_mode; resuming restarts from that checkpoint.")
                global_step += 1
                log.append({"step": global_step, "epoch": epoch, "lr": trainer.lr,
                            "seconds": round(time.perf_counter() - t, 4),
                            **{k: round(v, 6) for k, v in losses.items()}})
                bar.update(1)
                if global_step % cfg.checkpoint_every == 0:
                    save(epoch, s + 1)
                if cfg.max_steps is not None and global_step >= cfg.max_steps:
                    save(epoch, s + 1)
                    return TrainResult(out, global_step, epoch, log, None, resumed, trainer)
            trainer.end_epoch()
            epoch += 1
            step_in_epoch = 0
            save(epoch, 0)
            if on_epoch is not None and rank == 0:
                on_epoch(trainer, epoch, log)
    finally:
        bar.close()
    gpath = None
    if rank == 0:
        gpath = save_generator(trainer, cfg, out / "generator.pt", data.size)
    return TrainResult(out, global_step, epoch, log, gpath, resumed, trainer)


def save_generator(trainer, cfg: TrainConfig, path: Path, size: int) -> Path:
    """The trained mask -> SEM generator alone, for `semlab generate`."""
    from semlab.train.checkpoint import atomic_torch_save

    return atomic_torch_save({"format": "semlab-generator-1", "config": cfg.to_dict(), "size": int(size),
                              "model": trainer.generator().state_dict()}, path)
