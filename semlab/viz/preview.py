"""Per-epoch previews for notebooks: mask | generated | real on fixed samples.

An `on_epoch` callback for :func:`semlab.train.train`. It lives in `semlab.viz`
because it draws figures: viz may use train (it runs the generator), train never
imports viz.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from semlab.train import nets
from semlab.viz.training import translation_grid


class EpochPreview:
    """`train(cfg, on_epoch=EpochPreview(masks, reals, out_dir))`: after each epoch,
    generate the fixed samples, save `epoch_NNN.png` and (in a notebook) show it."""

    def __init__(self, masks: np.ndarray, reals: np.ndarray, out_dir=None, show: bool = True, every: int = 1):
        self.masks, self.reals = np.asarray(masks), np.asarray(reals)
        self.out_dir = Path(out_dir) if out_dir else None
        self.show, self.every = show, max(int(every), 1)
        self.figures: list[Path] = []

    @torch.no_grad()
    def __call__(self, trainer, epoch: int, log) -> None:
        if epoch % self.every:
            return
        g = trainer.generator()
        was = g.training
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            if not trainer.generate_train_mode:
                g.eval()
            x = trainer.encode_mask(self.masks, device=trainer.device)
            y = g(nets.with_noise(x, trainer.cfg)).float().clamp(-1, 1)
        g.train(was)
        fakes = ((y + 1) / 2)[:, 0].cpu().numpy()
        fig = translation_grid(self.masks, fakes, self.reals, titles=[f"epoch {epoch}"] + [""] * (len(fakes) - 1))
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            p = self.out_dir / f"epoch_{epoch:03d}.png"
            fig.savefig(p, dpi=70)
            self.figures.append(p)
        if self.show:
            try:
                from IPython.display import display

                display(fig)
            except ImportError:  # pragma: no cover
                pass
