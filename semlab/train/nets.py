"""Build the networks a training config asks for (from the `semlab.models` registry)."""

from __future__ import annotations

import torch

from semlab import labels
from semlab.train.config import TrainConfig


def mask_channels(cfg: TrainConfig) -> int:
    return labels.NUM_CLASSES + (1 if cfg.noise_channel else 0)


def with_noise(mask1h: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """Append a uniform noise channel in [-1, 1] when `noise_channel` is set."""
    if not cfg.noise_channel or mask1h.shape[1] == mask_channels(cfg):
        return mask1h
    noise = torch.rand(mask1h.shape[0], 1, *mask1h.shape[2:], device=mask1h.device, dtype=mask1h.dtype) * 2 - 1
    return torch.cat([mask1h, noise], dim=1)


def generator(cfg: TrainConfig, in_ch: int, out_ch: int, size: int) -> torch.nn.Module:
    from semlab import models

    kw = dict(in_channels=in_ch, out_channels=out_ch, ngf=cfg.ngf, norm=cfg.norm,
              dropout=cfg.dropout, upsample=cfg.upsample)
    if cfg.netG == "unet":
        kw["size"] = size
    return models.build_generator(cfg.netG, init=cfg.init, init_gain=cfg.init_gain, **kw)


def discriminator(cfg: TrainConfig, in_ch: int) -> torch.nn.Module:
    from semlab import models

    kw = dict(in_channels=in_ch, ndf=cfg.ndf, norm=cfg.norm)
    if cfg.netD in ("n_layers", "multiscale"):
        kw["n_layers"] = cfg.n_layers_D
    if cfg.lambda_fm > 0:
        kw["return_features"] = True
    return models.build_discriminator(cfg.netD, init=cfg.init, init_gain=cfg.init_gain, **kw)
