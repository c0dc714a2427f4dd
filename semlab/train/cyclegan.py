"""CycleGAN (Zhu et al. 2017) between canonical masks (domain A) and SEM images (B).

A is the one-hot mask scaled to [-1, 1] (4 channels), B the gray image (1 channel).
G_A: A -> B (the mask -> SEM translator used by `semlab generate`), G_B: B -> A;
D_A judges B images, D_B judges A masks. Losses as in the original: least-squares GAN,
cycle L1 x lambda_cycle (10) in both directions, identity L1 x lambda_identity x
lambda_cycle, and image pools of 50 generated samples for the discriminators.

Identity needs a generator's input and output in the same space; here the domains have
4 and 1 channels, so it is taken on adapted inputs: G_A(image repeated to 4 channels)
should return the image, G_B(the mask rendered as gray levels) should return the mask.
This keeps the original's purpose (the seed lowered it "to keep the gray SEM texture").
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from semlab import labels
from semlab.models import to_model
from semlab.train import nets
from semlab.train.config import TrainConfig
from semlab.train.diffaug import diff_augment
from semlab.train.losses import gan_loss
from semlab.train.pix2pix import Trainer, linear_decay

# gray level of each class when a mask is shown as an image (canonical palette luminance, [-1, 1])
_GRAY = torch.tensor([c.rgb for c in labels.CLASSES], dtype=torch.float32).mean(dim=1) / 127.5 - 1


class ImagePool:
    """The original's history of generated images: with a full pool, each returned image
    is, with probability 1/2, an older one (and the new one takes its place)."""

    def __init__(self, size: int = 50):
        self.size = size
        self.items: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for im in images.detach():
            im = im[None]
            if len(self.items) < self.size:
                self.items.append(im.clone())
                out.append(im)
            elif torch.rand(1).item() > 0.5:
                k = int(torch.randint(0, self.size, (1,)).item())
                out.append(self.items[k].clone())
                self.items[k] = im.clone()
            else:
                out.append(im)
        return torch.cat(out, 0)

    def state(self) -> list[torch.Tensor]:
        return [t.cpu() for t in self.items]

    def load(self, items) -> None:
        self.items = [t.clone() for t in items]


class CycleGANTrainer(Trainer):
    paired = False  # masks and images come in independent orders
    generate_train_mode = False  # eval mode, as the original's test script runs CycleGAN

    @staticmethod
    def encode_onehot(onehot: torch.Tensor) -> torch.Tensor:
        """Domain A: the one-hot mask scaled to [-1, 1] like an image (`semlab.models.to_model`)."""
        return to_model(onehot)

    def __init__(self, cfg: TrainConfig, size: int, device: torch.device | str = "cpu"):
        self.cfg = cfg
        self.device = torch.device(device)
        a_ch = nets.mask_channels(cfg)
        self.G_A = nets.generator(cfg, a_ch, 1, size)
        self.G_B = nets.generator(cfg, 1, labels.NUM_CLASSES, size)
        self.D_A = nets.discriminator(cfg, 1)
        self.D_B = nets.discriminator(cfg, labels.NUM_CLASSES)
        self._finish_nets(self.G_A, self.G_B, self.D_A, self.D_B)
        self.optG = torch.optim.Adam(itertools.chain(self.G_A.parameters(), self.G_B.parameters()),
                                     lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.optD = torch.optim.Adam(itertools.chain(self.D_A.parameters(), self.D_B.parameters()),
                                     lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.schedG = torch.optim.lr_scheduler.LambdaLR(self.optG, linear_decay(cfg))
        self.schedD = torch.optim.lr_scheduler.LambdaLR(self.optD, linear_decay(cfg))
        self.pool_A = ImagePool(cfg.pool_size)  # generated masks, for D_B
        self.pool_B = ImagePool(cfg.pool_size)  # generated images, for D_A
        self.w = {n: getattr(self, n) for n in ("G_A", "G_B", "D_A", "D_B")}

    def wrap(self, fn):
        self.w = {n: fn(getattr(self, n)) for n in ("G_A", "G_B", "D_A", "D_B")}

    def _aug(self, x):
        return diff_augment(x, self.cfg.diffaug) if self.cfg.diffaug else x

    def _set_d_grad(self, flag: bool):
        for p in itertools.chain(self.D_A.parameters(), self.D_B.parameters()):
            p.requires_grad_(flag)

    def train_step(self, mask1h: torch.Tensor, image: torch.Tensor) -> dict[str, float]:
        """`mask1h` and `image` come from independent orders (unpaired)."""
        cfg = self.cfg
        real_A = self.prep(self.encode_onehot(mask1h))
        real_B = self.prep(image)
        w = self.w
        lam = cfg.lambda_cycle
        # generators
        self._set_d_grad(False)
        self.optG.zero_grad(set_to_none=True)
        with self.autocast():
            fake_B = w["G_A"](nets.with_noise(real_A, cfg))
            rec_A = w["G_B"](fake_B)
            fake_A = w["G_B"](real_B)
            rec_B = w["G_A"](nets.with_noise(fake_A, cfg))
            loss_G_A = gan_loss(self.D_A(self._aug(fake_B)), True, cfg.gan_mode, for_discriminator=False)
            loss_G_B = gan_loss(self.D_B(self._aug(fake_A)), True, cfg.gan_mode, for_discriminator=False)
            loss_cyc_A = F.l1_loss(rec_A.float(), real_A.float()) * lam
            loss_cyc_B = F.l1_loss(rec_B.float(), real_B.float()) * lam
            loss = loss_G_A + loss_G_B + loss_cyc_A + loss_cyc_B
            loss_idt_A = loss_idt_B = torch.zeros(())
            if cfg.lambda_identity > 0:
                as_A = real_B.expand(-1, real_A.shape[1] - (1 if cfg.noise_channel else 0), -1, -1)
                idt_A = w["G_A"](nets.with_noise(as_A, cfg))
                gray = (real_A.float() * 0.5 + 0.5)  # one-hot in [0, 1]
                as_B = (gray * _GRAY.to(gray.device)[None, :, None, None]).sum(1, keepdim=True)
                idt_B = w["G_B"](as_B.to(real_B.dtype))
                loss_idt_A = F.l1_loss(idt_A.float(), real_B.float()) * lam * cfg.lambda_identity
                loss_idt_B = F.l1_loss(idt_B.float(), real_A.float()) * lam * cfg.lambda_identity
                loss = loss + loss_idt_A + loss_idt_B
        loss.backward()
        self.optG.step()
        # discriminators, on pooled fakes
        self._set_d_grad(True)
        self.optD.zero_grad(set_to_none=True)
        losses_D = []
        for D, real, fake in ((w["D_A"], real_B, self.pool_B.query(fake_B.float())),
                              (w["D_B"], real_A, self.pool_A.query(fake_A.float()))):
            with self.autocast():
                l_real = 0.5 * gan_loss(D(self._aug(real)), True, cfg.gan_mode)
            l_real.backward()
            with self.autocast():
                l_fake = 0.5 * gan_loss(D(self._aug(fake.to(real.dtype))), False, cfg.gan_mode)
            l_fake.backward()
            losses_D.append(l_real.item() + l_fake.item())
        self.optD.step()
        return {"loss_D_A": losses_D[0], "loss_D_B": losses_D[1], "loss_G_A": loss_G_A.item(),
                "loss_G_B": loss_G_B.item(), "loss_cycle_A": loss_cyc_A.item(), "loss_cycle_B": loss_cyc_B.item(),
                "loss_idt_A": float(loss_idt_A.detach()), "loss_idt_B": float(loss_idt_B.detach())}

    def generator(self) -> torch.nn.Module:
        return self.G_A

    def state_dict(self) -> dict:
        return {"G_A": self.G_A.state_dict(), "G_B": self.G_B.state_dict(), "D_A": self.D_A.state_dict(),
                "D_B": self.D_B.state_dict(), "optG": self.optG.state_dict(), "optD": self.optD.state_dict(),
                "schedG": self.schedG.state_dict(), "schedD": self.schedD.state_dict(),
                "pool_A": self.pool_A.state(), "pool_B": self.pool_B.state()}

    def load_state_dict(self, s: dict) -> None:
        for n in ("G_A", "G_B", "D_A", "D_B", "optG", "optD", "schedG", "schedD"):
            getattr(self, n).load_state_dict(s[n])
        self.pool_A.load(s["pool_A"])
        self.pool_B.load(s["pool_B"])
