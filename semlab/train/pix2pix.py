"""Pix2Pix (Isola et al. 2017): conditional GAN on (mask, image) pairs, plus lambda x L1."""

from __future__ import annotations

import contextlib

import torch

from semlab.models import one_hot
from semlab.train.config import TrainConfig
from semlab.train.diffaug import diff_augment
from semlab.train.losses import feature_matching, gan_loss
from semlab.train import nets


def linear_decay(cfg: TrainConfig):
    """The original schedule: constant lr for n_epochs, then linear decay to 0 over
    n_epochs_decay (stepped once per epoch)."""
    def f(epoch: int) -> float:
        return 1.0 - max(0, epoch + 1 - cfg.n_epochs) / float(cfg.n_epochs_decay + 1)
    return f


class Trainer:
    """Common parts: autocast, channels_last, the per-epoch schedule, the learning rate,
    and what a model is: how a mask enters its generator (`encode_mask`), whether it
    trains on pairs (`paired`) and how it generates (`generate_train_mode`). Callers ask
    the trainer class (`semlab.train.loop.trainer_class(cfg.model)`), never the model name."""

    cfg: TrainConfig
    #: masks and images of a batch belong together (False: drawn in independent orders)
    paired: bool = True
    #: generate with batch statistics and dropout on, as the original's test script does
    generate_train_mode: bool = True

    @classmethod
    def encode_mask(cls, mask, device=None) -> torch.Tensor:
        """Canonical label map(s) ``(H, W)`` or ``(B, H, W)`` (numpy or tensor, class ids
        0..NUM_CLASSES-1, checked) -> the generator's mask input, float32
        ``(B, NUM_CLASSES, H, W)`` on `device`: the one-hot mask (`semlab.models.one_hot`)
        in this model's mask domain (`encode_onehot`). The noise channel, if any, is
        appended by the caller (`nets.with_noise`)."""
        return cls.encode_onehot(one_hot(mask, device=device))

    @staticmethod
    def encode_onehot(onehot: torch.Tensor) -> torch.Tensor:
        """A one-hot mask batch in {0, 1} -> this model's mask domain (Pix2Pix: unchanged)."""
        return onehot

    def end_epoch(self) -> None:
        self.schedG.step()
        self.schedD.step()

    @property
    def lr(self) -> float:
        return float(self.optG.param_groups[0]["lr"])

    def autocast(self):
        if self.cfg.precision == "bf16":
            return torch.autocast("cpu" if self.device.type == "cpu" else self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def prep(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else x

    def _finish_nets(self, *modules):
        for m in modules:
            m.to(self.device)
            if self.cfg.channels_last:
                m.to(memory_format=torch.channels_last)


class Pix2PixTrainer(Trainer):
    def __init__(self, cfg: TrainConfig, size: int, device: torch.device | str = "cpu"):
        self.cfg = cfg
        self.device = torch.device(device)
        self.in_ch = nets.mask_channels(cfg)
        self.G = nets.generator(cfg, self.in_ch, 1, size)
        self.D = nets.discriminator(cfg, self.in_ch + 1)
        self._finish_nets(self.G, self.D)
        self.optG = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.optD = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.schedG = torch.optim.lr_scheduler.LambdaLR(self.optG, linear_decay(cfg))
        self.schedD = torch.optim.lr_scheduler.LambdaLR(self.optD, linear_decay(cfg))
        self.ddp_G = self.G
        self.ddp_D = self.D

    # the nets to wrap for DistributedDataParallel
    def wrap(self, fn):
        self.ddp_G = fn(self.G)
        self.ddp_D = fn(self.D)

    def _d_in(self, mask, img):
        x = torch.cat([mask, img], dim=1)
        if self.cfg.diffaug:
            x = diff_augment(x, self.cfg.diffaug, image_channels=slice(self.in_ch, self.in_ch + 1))
        return x

    def train_step(self, mask: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
        """One step of the original order: G forward; D update; G update."""
        cfg = self.cfg
        mask, real = self.prep(mask), self.prep(real)
        G, D = self.ddp_G, self.ddp_D
        with self.autocast():
            fake = G(nets.with_noise(mask, cfg))
        # D: real pairs -> 1, fake pairs -> 0
        for p in self.D.parameters():
            p.requires_grad_(True)
        self.optD.zero_grad(set_to_none=True)
        # two backward passes (fake, then real) accumulate the same gradient as one on the
        # sum, and keep each forward paired with its backward, as DistributedDataParallel needs
        with self.autocast():
            loss_D_fake = 0.5 * gan_loss(D(self._d_in(mask, fake.detach())), False, cfg.gan_mode)
        loss_D_fake.backward()
        with self.autocast():
            loss_D_real = 0.5 * gan_loss(D(self._d_in(mask, real)), True, cfg.gan_mode)
        loss_D_real.backward()
        loss_D = loss_D_fake.detach() + loss_D_real.detach()
        self.optD.step()
        # G: fool D, stay close to the real image
        for p in self.D.parameters():
            p.requires_grad_(False)
        self.optG.zero_grad(set_to_none=True)
        with self.autocast():
            # the plain D (not its DDP wrapper): D is not updated here, only G's gradients flow
            pred_fake = self.D(self._d_in(mask, fake))
            loss_gan = gan_loss(pred_fake, True, cfg.gan_mode, for_discriminator=False)
            loss_l1 = torch.nn.functional.l1_loss(fake.float(), real.float()) * cfg.lambda_l1
            loss_G = loss_gan + loss_l1
            loss_fm = None
            if cfg.lambda_fm > 0:
                with torch.no_grad():
                    pred_real = self.D(self._d_in(mask, real))
                loss_fm = feature_matching(pred_fake, pred_real) * cfg.lambda_fm
                loss_G = loss_G + loss_fm
        loss_G.backward()
        self.optG.step()
        for p in self.D.parameters():
            p.requires_grad_(True)
        out = {"loss_D": loss_D.item(), "loss_G_GAN": loss_gan.item(), "loss_G_L1": loss_l1.item()}
        if loss_fm is not None:
            out["loss_G_FM"] = loss_fm.item()
        return out

    def generator(self) -> torch.nn.Module:
        return self.G

    def state_dict(self) -> dict:
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "optG": self.optG.state_dict(),
                "optD": self.optD.state_dict(), "schedG": self.schedG.state_dict(), "schedD": self.schedD.state_dict()}

    def load_state_dict(self, s: dict) -> None:
        self.G.load_state_dict(s["G"])
        self.D.load_state_dict(s["D"])
        self.optG.load_state_dict(s["optG"])
        self.optD.load_state_dict(s["optD"])
        self.schedG.load_state_dict(s["schedG"])
        self.schedD.load_state_dict(s["schedD"])
