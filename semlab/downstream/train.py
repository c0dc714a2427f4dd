"""Training the downstream segmenter: a fixed budget of steps x batch for every training
set, the checkpoint chosen on the target domain's validation split, deterministic per seed.

- Every training set gets the same augmentation (`semlab.downstream.data.augment`: 90-degree
  rotations, flips, intensity jitter) and the same `steps` x `batch`.
- Loss: cross-entropy + soft Dice (mean over the classes present in the batch's masks),
  Adam with a cosine learning-rate decay; bf16 autocast and channels-last (`SegmenterConfig`).
- Every `val_every` steps (and at the end) the validation mIoU over the structure classes
  of the validation masks is measured; the weights of the best one are kept
  (`TrainedSegmenter.best_step`). Without a validation split the last weights are kept.
- Determinism: the initial weights come from `seed`, the batches and augmentation from a
  numpy generator seeded with `seed`; torch's CPU kernels are deterministic for a fixed
  thread count, so one seed gives the same weights twice in one environment.

Training is not resumable (a run is seconds to minutes); a killed run starts again.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from semlab.downstream.data import Items, TrainingSet, augment, structure_classes
from semlab.downstream.model import Segmenter, SegmenterConfig, autocast, build_segmenter, predict, to_input

__all__ = ["TrainSettings", "TrainedSegmenter", "train_segmenter", "quick_miou", "segmentation_loss"]


@dataclass(frozen=True)
class TrainSettings:
    """The budget and optimiser of one training run (the same for every training set)."""

    steps: int = 300
    batch: int = 8
    lr: float = 3e-3
    val_every: int = 50
    max_val: int | None = 64
    seed: int = 0
    width: int = 16
    depth: int = 3
    space_to_depth: int = 2
    precision: str = "bf16"
    channels_last: bool = True
    dice_weight: float = 1.0

    def model_config(self) -> SegmenterConfig:
        return SegmenterConfig(width=self.width, depth=self.depth, space_to_depth=self.space_to_depth,
                               precision=self.precision,
                               channels_last=self.channels_last)


@dataclass
class TrainedSegmenter:
    model: Segmenter
    settings: TrainSettings
    best_step: int
    val_miou: float | None
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    n_train: int = 0
    spec: str = ""

    def meta(self) -> dict:
        return {"settings": asdict(self.settings), "best_step": self.best_step, "val_miou": self.val_miou,
                "seconds": round(self.seconds, 2), "n_train": self.n_train, "train_spec": self.spec,
                "history": self.history}


def quick_miou(pred: np.ndarray, true: np.ndarray, classes=None) -> float:
    """mIoU of pooled pixels over `classes` (default: the structure classes of `true`)."""
    classes = structure_classes(true) if classes is None else classes
    ious = []
    for c in classes:
        p, t = pred == c, true == c
        union = np.logical_or(p, t).sum()
        ious.append(np.logical_and(p, t).sum() / union if union else 1.0)
    return float(np.mean(ious)) if ious else float("nan")


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float) -> torch.Tensor:
    logits = logits.float()
    ce = torch.nn.functional.cross_entropy(logits, target)
    if not dice_weight:
        return ce
    prob = logits.softmax(1)
    onehot = torch.nn.functional.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).float()
    present = onehot.sum((0, 2, 3)) > 0
    inter = (prob * onehot).sum((0, 2, 3))
    denom = prob.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    dice = (2 * inter + 1.0) / (denom + 1.0)
    return ce + dice_weight * (1 - dice[present].mean())


def train_segmenter(ts: TrainingSet, val: Items | None, settings: TrainSettings = TrainSettings(), *,
                    progress: bool = True, desc: str = "") -> TrainedSegmenter:
    """Train a new segmenter on `ts` for `settings.steps` steps of `settings.batch` tiles;
    keep the weights with the best mIoU on `val` (see the module docstring)."""
    if ts.n == 0:
        raise ValueError(f"training set {ts.spec!r} is empty")
    s = settings
    rng = np.random.default_rng([int(s.seed), 3])
    model = build_segmenter(s.model_config(), seed=s.seed)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + np.cos(np.pi * min(k, s.steps) / s.steps)))
    vimg = vmask = None
    if val is not None and len(val):
        keep = np.linspace(0, len(val) - 1, min(len(val), s.max_val or len(val))).round().astype(int)
        vimg, vmask = val.images[keep], val.masks[keep]
    best, best_step, best_state, history = -1.0, s.steps, None, []
    t0 = time.perf_counter()
    model.train()
    bar = tqdm(range(1, s.steps + 1), desc=desc or f"segmenter {ts.spec}", disable=not progress, leave=False)
    for step in bar:
        imgs, masks = ts.sample(rng, s.batch)
        x, m = augment(imgs, masks, rng)
        xt = to_input(x, model.cfg)
        mt = torch.from_numpy(m.astype(np.int64))
        with autocast(model.cfg):
            logits = model(xt)
        loss = segmentation_loss(logits, mt, s.dice_weight)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training {ts.spec!r}: the loss became {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if vimg is not None and (step % s.val_every == 0 or step == s.steps):
            v = quick_miou(predict(model, vimg), vmask)
            history.append({"step": step, "loss": round(float(loss.item()), 5), "val_miou": round(v, 5)})
            if v > best:
                best, best_step, best_state = v, step, copy.deepcopy(model.state_dict())
            model.train()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainedSegmenter(model, s, best_step, best if vimg is not None else None, history,
                            time.perf_counter() - t0, ts.n, ts.spec)
