"""The SAM2 arms of the SegSEM experiment: one pretrained SAM2, fine-tuned copies of it
per fold and mode, and predictors wrapping them (`Sam2Arms`).

The pretrained base is read once through `semlab.contours.predictor.load_sam2_model`
(semlab's own safe loader: `weights_only=True`, strict state dict). `Sam2Arms.check()`
loads it up front and turns a file that is not a valid SAM2 checkpoint into the one-line
reason the experiment's tables print as "unavailable: ...", like missing weights.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Sequence

from semlab import labels as L
from semlab.contours.experiment_config import ExperimentConfig, Item

__all__ = ["Sam2Arms"]


class Sam2Arms:
    """Loads the pretrained SAM2 once, fine-tunes copies of it per fold and mode, and
    wraps models in predictors."""

    def __init__(self, config: ExperimentConfig, progress: bool):
        self.cfg = config
        self.progress = progress
        self._base = None

    def check(self) -> str | None:
        """None if the pretrained SAM2 loads, else why not ("SAM2 weights unavailable:
        <file> is not a valid SAM2 checkpoint (<reason>)"): a bad file becomes one line
        in the tables, not a traceback in the middle of fold 0."""
        from semlab.segment.sam2_model import Sam2CheckpointError
        from semlab.weights import WeightsNotFound

        try:
            self.base()
        except (Sam2CheckpointError, WeightsNotFound) as e:
            return f"SAM2 weights unavailable: {e}"
        return None

    def base(self):
        if self._base is None:
            from semlab.contours.predictor import load_sam2_model

            self._base, _ = load_sam2_model(self.cfg.sam2_model, self.cfg.sam2_checkpoint, self.cfg.sam2_image_size)
        return self._base

    def finetune_config(self, mode: str, fold: int):
        from semlab.contours.finetune import FinetuneConfig

        c = self.cfg
        return FinetuneConfig(model=c.sam2_model, checkpoint=c.sam2_checkpoint, image_size=c.sam2_image_size,
                              mode=mode, epochs=c.sam2_epochs, max_steps=c.sam2_steps, batch_size=1,
                              max_prompts=c.sam2_max_prompts, bf16=c.sam2_bf16, seed=c.seed * 100 + fold,
                              patience=c.sam2_patience)

    def train(self, mode: str, fold: int, folder: Path, train: Sequence[Item], val: Sequence[Item]):
        """(model, info) for `mode` ("zero_shot": the pretrained model itself)."""
        if mode == "zero_shot":
            return self.base(), {"mode": "zero_shot"}
        from semlab.contours.finetune import finetune, make_examples

        t0 = time.perf_counter()
        ex_t = make_examples([it.image for it in train], [it.mask for it in train], classes=[L.PATTERN],
                             names=[it.id for it in train])
        ex_v = make_examples([it.image for it in val], [it.mask for it in val], classes=[L.PATTERN],
                             names=[it.id for it in val])
        res = finetune(ex_t, ex_v, self.finetune_config(mode, fold), folder / f"sam2-{mode}", progress=self.progress,
                       sam_model=copy.deepcopy(self.base()))
        return res.model, {"mode": mode, "steps": res.steps, "epochs": res.epochs, "best_epoch": res.best_epoch,
                           "best_val_loss": res.best_val_loss, "history": res.history,
                           "exported": str(res.exported) if res.exported else None,
                           "seconds": round(time.perf_counter() - t0, 2)}

    def load(self, mode: str, folder: Path):
        """A fold's model from disk (for OOD sets and re-predictions)."""
        if mode == "zero_shot":
            return self.base()
        from semlab.contours.predictor import load_sam2_model

        path = folder / f"sam2-{mode}" / f"{self.cfg.sam2_model}.pt"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the fine-tuned {mode} model of {folder.name} is missing "
                                    f"(delete {folder / 'result.json'} to train it again)")
        return load_sam2_model(self.cfg.sam2_model, path, self.cfg.sam2_image_size)[0]

    def predictor(self, net):
        from semlab.contours.predictor import Sam2Predictor

        return Sam2Predictor.from_model(net, self.cfg.sam2_model, bf16=self.cfg.sam2_bf16)
