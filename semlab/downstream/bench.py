"""`semlab bench downstream`: training images/s of the downstream segmenter against the
Pix2Pix U-Net generator, at the same size, batch and precision, measured in one run.

Both train on the same simulated ic-metal tiles held in memory: the segmenter with its own
step (`semlab.downstream.train`: augmentation, cross-entropy + Dice, Adam), the Pix2Pix
U-Net generator (`semlab.models.build_generator("unet")`, ngf 64, the original
architecture) with a plain L1 step and Adam (the generator alone: a full Pix2Pix step
also trains the discriminator and is slower, so the ratio here is the conservative one).
Steps alternate between the two networks after warm-up steps; the medians of the step
times give images/s. The record names the CPU (`/proc/cpuinfo` model name).
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np

__all__ = ["bench_downstream", "cpu_name"]


def cpu_name() -> str:
    """The CPU's model name (as `lscpu` shows it), or platform.processor()."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bench_downstream(size: int = 256, batch_size: int = 8, steps: int = 5, warmup: int = 2, width: int = 16,
                     depth: int = 3, space_to_depth: int = 2, precision: str = "bf16") -> list[dict]:
    """One record: segmenter and Pix2Pix-generator training images/s and their ratio
    (target >= 3) at `size` px, `batch_size`, `precision` (module docstring)."""
    import torch

    from semlab import io
    from semlab.data.simulate import simulate
    from semlab.downstream.data import Component, Items, TrainingSet, augment
    from semlab.downstream.model import SegmenterConfig, autocast, build_segmenter, to_input
    from semlab.downstream.train import segmentation_loss
    from semlab.models import build_generator, count_params, one_hot, to_model

    sims = [simulate("ic-metal", size, (0, i), with_contours=False) for i in range(batch_size)]
    imgs = np.stack([io.to_uint8(s.image) for s in sims])
    masks = np.stack([s.mask for s in sims]).astype(np.uint8)
    ids = [str(i) for i in range(batch_size)]
    ts = TrainingSet("bench", [Component("bench", "real", Items(imgs, masks, ids, ids), 1, (0, 1, 3))])
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    cl = precision == "bf16"
    seg = build_segmenter(SegmenterConfig(width=width, depth=depth, space_to_depth=space_to_depth, precision=precision,
                                          channels_last=cl), seed=0)
    seg_opt = torch.optim.Adam(seg.parameters(), lr=1e-3)
    gen = build_generator("unet", size=size)
    if cl:
        gen = gen.to(memory_format=torch.channels_last)
    gen_opt = torch.optim.Adam(gen.parameters(), lr=2e-4, betas=(0.5, 0.999))
    gmask = one_hot(masks)
    gimg = to_model(imgs)
    if cl:
        gmask, gimg = (t.contiguous(memory_format=torch.channels_last) for t in (gmask, gimg))

    def seg_step():
        im, m = ts.sample(rng, batch_size)
        x, mm = augment(im, m, rng)
        with autocast(seg.cfg):
            logits = seg(to_input(x, seg.cfg))
        loss = segmentation_loss(logits, torch.from_numpy(mm.astype(np.int64)), 1.0)
        seg_opt.zero_grad(set_to_none=True)
        loss.backward()
        seg_opt.step()

    def gen_step():
        with autocast(seg.cfg):
            fake = gen(gmask)
        loss = (fake.float() - gimg).abs().mean()
        gen_opt.zero_grad(set_to_none=True)
        loss.backward()
        gen_opt.step()

    seg.train()
    gen.train()
    for _ in range(warmup):
        seg_step()
        gen_step()
    ts_seg, ts_gen = [], []
    for _ in range(steps):
        t = time.perf_counter()
        seg_step()
        ts_seg.append(time.perf_counter() - t)
        t = time.perf_counter()
        gen_step()
        ts_gen.append(time.perf_counter() - t)
    seg_ips = batch_size / float(np.median(ts_seg))
    gen_ips = batch_size / float(np.median(ts_gen))
    return [{"name": "downstream", "size": size, "batch_size": batch_size, "precision": precision,
             "channels_last": cl, "steps": steps, "segmenter_width": width, "segmenter_depth": depth,
             "segmenter_space_to_depth": space_to_depth,
             "segmenter_params": count_params(seg), "pix2pix_generator_params": count_params(gen),
             "images_per_s": round(seg_ips, 3), "segmenter_images_per_s": round(seg_ips, 3),
             "pix2pix_generator_images_per_s": round(gen_ips, 3), "ratio": round(seg_ips / gen_ips, 2),
             "target_ratio": 3.0, "cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
             "python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count()}]
