"""`semlab bench segsem`: the cost of SAM2 image embeddings and fine-tuning steps.

Timing only, with a randomly initialised model (every record says `weights: "random"`):
the cost of a forward/backward pass does not depend on the weights' values, so the
numbers hold for the pretrained model too. One record per (model size, precision):

- `s_per_image`: median seconds of `Sam2Predictor.set_image` (the image encoder on one
  image; what every image costs before its prompts are decoded);
- `predict_s_median`: median seconds of one batched `predict` call with one box;
- `step_s_median`: median seconds of one encoder-only fine-tuning step (SegSEM: image
  encoder trains, mask decoder frozen) with batch 1, one box prompt, BCE + Dice, AdamW.

Model building and one warm-up call of each kind are not timed. `max_rss_mb` is the
process's peak resident memory so far (it only grows across records).
"""

from __future__ import annotations

import copy
import os
import platform
import resource
import tempfile
import time
from typing import Sequence

import numpy as np

__all__ = ["bench_segsem"]

PRECISIONS = ("fp32", "bf16")


def _median_time(fn, n: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), times


def bench_segsem(model: str = "sam2.1_hiera_tiny", sizes: Sequence[int] = (512, 1024),
                 precisions: Sequence[str] = ("fp32", "bf16"), steps: int = 3, image_px: int | None = None,
                 seed: int = 0) -> list[dict]:
    """Seconds per image embedding and per fine-tuning step, one dict per (size,
    precision); see the module docstring. `image_px` is the side of the simulated
    ic-metal image (default: the model size, so no resizing cost hides)."""
    import torch

    from semlab.contours.finetune import FinetuneConfig, Sam2Finetuner, make_examples
    from semlab.contours.predictor import Sam2Predictor, load_sam2_model
    from semlab.data.simulate import simulate
    from semlab.segment.sam2_backend import make_random_checkpoint

    if isinstance(sizes, int):
        sizes = (sizes,)
    if isinstance(precisions, str):
        precisions = (precisions,)
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad:
        raise KeyError(f"unknown precision(s) {bad}; valid: {', '.join(PRECISIONS)}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    out = []
    with tempfile.TemporaryDirectory(prefix="semlab-segsem-bench-") as tmp:
        ckpt = make_random_checkpoint(model, tmp, image_size=1024, seed=seed)  # loads into 512 too
        for size in sizes:
            px = int(image_px or size)
            sim = simulate("ic-metal", px, seed)
            ex = make_examples([sim.image], [sim.mask], classes=[1])
            if not ex:
                raise RuntimeError("the simulated image has no pattern structure to prompt")
            ex[0].prompts[:] = ex[0].prompts[:1]  # one box prompt
            base, _ = load_sam2_model(model, ckpt, size)
            for prec in precisions:
                bf16 = prec == "bf16"
                pred = Sam2Predictor.from_model(copy.deepcopy(base), model, bf16=bf16)
                pred.set_image(sim.image)  # warm-up
                s_img, t_img = _median_time(lambda: pred.set_image(sim.image), steps)
                pred.predict(ex[0].prompts)
                s_pred, _ = _median_time(lambda: pred.predict(ex[0].prompts), steps)
                cfg = FinetuneConfig(model=model, image_size=size, mode="encoder", bf16=bf16, batch_size=1,
                                     max_prompts=1, use_points=False, augment=False, seed=seed)
                tuner = Sam2Finetuner(cfg, sam_model=copy.deepcopy(base))
                tuner.train_step(ex)  # warm-up
                s_step, t_step = _median_time(lambda: tuner.train_step(ex), steps)
                pred = tuner = None  # free the copies before the next configuration
                out.append({
                    "name": "segsem", "model": model, "size": int(size), "image_px": px, "precision": prec,
                    "bf16": bf16, "weights": "random", "steps": int(steps),
                    "s_per_image": round(s_img, 4), "predict_s_median": round(s_pred, 4),
                    "step_s_median": round(s_step, 4),
                    "s_per_image_all": [round(t, 4) for t in t_img], "step_s_all": [round(t, 4) for t in t_step],
                    "train": "encoder-only, batch 1, 1 box, BCE+Dice, AdamW",
                    "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "python": platform.python_version(), "cpus": os.cpu_count(),
                })
            base = None
    return out
