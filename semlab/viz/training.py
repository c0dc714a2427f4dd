"""Figures for training notebooks: loss curves and mask | generated | real grids."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from semlab import labels
from semlab.viz.figures import axis_off, show_gray


def translation_grid(masks: Sequence[np.ndarray], fakes: Sequence[np.ndarray],
                     reals: Sequence[np.ndarray] | None = None, titles: Sequence[str] | None = None) -> Figure:
    """One column per sample: the mask (canonical colours), the generated image and,
    if given, the real image."""
    n = len(masks)
    rows = 3 if reals is not None else 2
    fig = Figure(figsize=(2.0 * n + 0.6, 2.0 * rows + 0.3), layout="constrained")
    axes = np.array(fig.subplots(rows, n)).reshape(rows, n)
    for j in range(n):
        axes[0, j].imshow(labels.colorize(masks[j]), interpolation="nearest")
        axis_off(axes[0, j])
        show_gray(axes[1, j], fakes[j])
        if reals is not None:
            show_gray(axes[2, j], reals[j])
        if titles:
            axes[0, j].set_title(titles[j], fontsize=8)
    for i, name in enumerate(["mask", "generated", "real"][:rows]):
        axes[i, 0].set_ylabel(name)
    return fig


def loss_curves(logs: Mapping[str, Sequence[Mapping]], keys: Sequence[str] = ("loss_D", "loss_G_GAN", "loss_G_L1"),
                smooth: int = 25) -> Figure:
    """Loss against step for one or several runs (e.g. fp32 vs bf16), moving average of
    `smooth` steps over the raw values (faint)."""
    fig = Figure(figsize=(4.0 * len(keys), 3.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(keys)))
    for ax, key in zip(axes, keys):
        for name, log in logs.items():
            pts = [(r["step"], r[key]) for r in log if r.get(key) is not None]
            if not pts:
                continue
            x, y = np.array(pts, dtype=np.float64).T
            line, = ax.plot(x, y, alpha=0.25, lw=0.7)
            if len(y) >= smooth > 1:
                k = np.ones(smooth) / smooth
                ax.plot(x[smooth - 1:], np.convolve(y, k, mode="valid"), color=line.get_color(), lw=1.6, label=name)
            else:
                line.set_label(name)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig
