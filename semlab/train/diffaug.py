"""Differentiable augmentation for the discriminator (in the spirit of DiffAugment,
Zhao et al. 2020): the same random transform is applied to real and fake D inputs and
gradients flow through it, which stops D from memorising a small training set.

Policies (comma-separated): `translation` (shift by up to 1/8 of the size, zero
padding), `cutout` (a random square of half the size set to 0, i.e. mid-gray in
[-1, 1]), `color` (brightness +-0.5 and contrast x[0.5, 1.5] on the image channels
only; mask channels keep their values).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("translation", "cutout", "color")


def parse_policy(policy: str) -> list[str]:
    parts = [p.strip() for p in (policy or "").split(",") if p.strip()]
    bad = set(parts) - set(POLICIES)
    if bad:
        raise ValueError(f"unknown DiffAugment policy {sorted(bad)}; valid: {', '.join(POLICIES)}")
    return parts


def diff_augment(x: torch.Tensor, policy: str, image_channels: slice = slice(None)) -> torch.Tensor:
    """Augment a batch (B, C, H, W); `image_channels` are the channels `color` acts on."""
    for p in parse_policy(policy):
        if p == "color":
            b = x.shape[0]
            img = x[:, image_channels]
            img = img + (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)
            mean = img.mean(dim=(1, 2, 3), keepdim=True)
            img = (img - mean) * (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean
            x = x.clone()
            x[:, image_channels] = img
        elif p == "translation":
            b, _, h, w = x.shape
            sy, sx = max(h // 8, 1), max(w // 8, 1)
            dy = torch.randint(-sy, sy + 1, (b,), device=x.device)
            dx = torch.randint(-sx, sx + 1, (b,), device=x.device)
            pad = F.pad(x, (sx, sx, sy, sy))
            rows = (torch.arange(h, device=x.device)[None, :] + sy - dy[:, None])  # (b, h)
            cols = (torch.arange(w, device=x.device)[None, :] + sx - dx[:, None])  # (b, w)
            x = pad[torch.arange(b)[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        elif p == "cutout":
            b, _, h, w = x.shape
            ch, cw = h // 2, w // 2
            cy = torch.randint(0, h - ch + 1, (b,), device=x.device)
            cx = torch.randint(0, w - cw + 1, (b,), device=x.device)
            yy = torch.arange(h, device=x.device)[None, :, None]
            xx = torch.arange(w, device=x.device)[None, None, :]
            keep = ~(((yy >= cy[:, None, None]) & (yy < (cy + ch)[:, None, None]))
                     & ((xx >= cx[:, None, None]) & (xx < (cx + cw)[:, None, None])))
            x = x * keep[:, None].to(x.dtype)
    return x
