"""Trained generator + canonical masks -> SEM images (`semlab generate`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from semlab import io, labels
from semlab.train.config import TrainConfig


class Generator:
    """A trained mask -> SEM generator loaded from `generator.pt` or a training checkpoint."""

    def __init__(self, path, device: str = "cpu"):
        from semlab.train.checkpoint import load_checkpoint
        from semlab.train import nets

        st = load_checkpoint(path)
        if "model" in st and st.get("format") == "semlab-generator-1":
            cfg, sd, size = TrainConfig.from_dict(st["config"]), st["model"], int(st["size"])
        elif "trainer" in st:
            cfg, sd = TrainConfig.from_dict(st["config"]), st["trainer"]["G"] if "G" in st["trainer"] else st["trainer"]["G_A"]
            size = int(st.get("size") or 256)
        else:
            raise ValueError(f"{path}: neither a semlab generator nor a training checkpoint")
        self.cfg, self.size, self.path = cfg, size, Path(path)
        self.device = torch.device(device)
        self.net = nets.generator(cfg, nets.mask_channels(cfg), 1, size).to(self.device)
        self.net.load_state_dict(sd)

    @torch.no_grad()
    def __call__(self, masks: np.ndarray, seed: int = 0, batch_size: int = 8, train_mode: bool | None = None) -> np.ndarray:
        """Label maps (N, H, W) or (H, W) -> float32 images in [0, 1].

        Pix2Pix is run as the original's test script does (batch statistics and dropout
        on: `train_mode=True`), CycleGAN in eval mode; either way the output is fixed
        by `seed`."""
        from semlab.train import nets

        m = np.asarray(masks)
        single = m.ndim == 2
        m = m[None] if single else m
        if m.size and (m.min() < 0 or m.max() >= labels.NUM_CLASSES):
            raise ValueError(f"masks hold ids outside 0..{labels.NUM_CLASSES - 1}")
        h, w = m.shape[1:]
        if h != w or h & (h - 1):
            raise ValueError(f"masks are {h}x{w}; the generator needs square power-of-two sizes")
        train_mode = (self.cfg.model == "pix2pix") if train_mode is None else train_mode
        if train_mode:  # batch statistics: one image per batch, so no image depends on another
            batch_size = 1
        self.net.train(train_mode)
        out = []
        with torch.random.fork_rng(devices=[]):
            for i in range(0, len(m), batch_size):
                torch.manual_seed(seed)  # each batch (image) gets the same noise: order-independent
                t = torch.from_numpy(m[i:i + batch_size].astype(np.int64))
                x = torch.nn.functional.one_hot(t, labels.NUM_CLASSES).permute(0, 3, 1, 2).float().to(self.device)
                if self.cfg.model == "cyclegan":  # its mask domain is one-hot scaled to [-1, 1]
                    x = x * 2 - 1
                y = self.net(nets.with_noise(x, self.cfg)).float()
                out.append(((y.clamp(-1, 1) + 1) / 2)[:, 0].cpu().numpy())
        self.net.train(False)
        res = np.concatenate(out).astype(np.float32)
        return res[0] if single else res


def generate_folder(checkpoint, masks_dir, out_dir, *, seed: int = 0, batch_size: int = 8,
                    progress: bool = True) -> Path:
    """Every mask in `masks_dir` (any format `semlab.io.read_mask` takes) -> a PNG of the
    same name in `out_dir`. Existing files are never overwritten (resumable)."""
    from semlab.data.sources import list_images

    gen = Generator(checkpoint)
    masks_dir, out_dir = Path(masks_dir), Path(out_dir)
    files = list_images(masks_dir)
    if not files:
        raise ValueError(f"{masks_dir}: no mask images found")
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [f for f in files if not (out_dir / f"{f.stem}.png").exists()]
    for f in tqdm(todo, desc="generate", disable=not progress, unit="img"):
        m = io.read_mask(f)
        img = gen(m, seed=seed)
        io.write_image(out_dir / f"{f.stem}.png", img)
    return out_dir
