"""bf16 against fp32: the same training in fp32, from the same seed and batches, for the
first epochs, so that notebook 20 can show that bf16 autocast does not change what the
network learns (`compare_precision`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from semlab.train.config import TrainConfig
from semlab.train.data import steps_per_epoch
from semlab.train.loop import train

__all__ = ["PrecisionComparison", "compare_precision"]


@dataclass
class PrecisionComparison:
    """The loss logs of both runs over the fp32 run's steps (`curves`: {"bf16": [...],
    "fp32": [...]}), the mean L1 loss over their last quarter and the median step time."""

    curves: dict[str, list[dict]]
    steps: int

    @property
    def l1(self) -> dict[str, float]:
        return {k: float(np.mean([r["loss_G_L1"] for r in v[-len(v) // 4:]])) for k, v in self.curves.items()}

    @property
    def step_s(self) -> dict[str, float]:
        return {k: float(np.median([r["seconds"] for r in v])) for k, v in self.curves.items()}

    def summary(self) -> str:
        l1, t = self.l1, self.step_s
        return (f"mean L1 loss over the last quarter of {self.steps} steps: bf16 {l1['bf16']:.3f}, "
                f"fp32 {l1['fp32']:.3f}\nmedian step time: bf16 {t['bf16']:.3f} s, fp32 {t['fp32']:.3f} s "
                f"({t['fp32'] / t['bf16']:.1f}x)")


def compare_precision(cfg: TrainConfig, bf16_log: list[dict], epochs: int, n_train: int, *,
                      progress: bool = True) -> PrecisionComparison:
    """Train `cfg` in fp32 (no channels-last) for `epochs` epochs of `n_train` pairs into
    `<cfg.out>-fp32` (resumable like any training) and pair its log with the same steps of
    the bf16 run's log `bf16_log`."""
    out = Path(cfg.out)
    cfg32 = TrainConfig(**{**cfg.to_dict(), "precision": "fp32", "channels_last": False,
                           "out": str(out.parent / f"{out.name}-fp32"), "n_epochs": cfg.n_epochs,
                           "max_steps": epochs * steps_per_epoch(n_train, cfg.batch_size)})
    res32 = train(cfg32, progress=progress)
    return PrecisionComparison({"bf16": [r for r in bf16_log if r["step"] <= res32.steps], "fp32": res32.log},
                               res32.steps)
