"""Figures for metric tables: per-image distributions, worst cases, sample-size bias."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from semlab import labels

_LABEL = {"psnr": "PSNR (dB) ↑", "ssim": "SSIM ↑", "ms_ssim": "MS-SSIM ↑", "lpips": "LPIPS ↓"}


def metric_distributions_figure(per_image: dict[str, dict[str, np.ndarray]],
                                metrics=("psnr", "ssim", "ms_ssim", "lpips")) -> Figure:
    """Violins of per-image values, one panel per metric, one violin per model, with the
    median marked: a mean hides whether a model is uniformly mediocre or mostly good
    with a few failures."""
    metrics = [m for m in metrics if any(m in v for v in per_image.values())]
    models = list(per_image)
    fig = Figure(figsize=(3.6 * max(len(metrics), 1), 0.45 * max(len(models), 1) + 2.2), layout="constrained")
    axes = fig.subplots(1, max(len(metrics), 1), squeeze=False)[0]
    for ax, m in zip(axes, metrics):
        names = [n for n in models if m in per_image[n] and len(per_image[n][m])]
        data = [np.asarray(per_image[n][m], float) for n in names]
        if data:
            parts = ax.violinplot(data, vert=False, showmedians=True, showextrema=True)
            for body in parts["bodies"]:
                body.set_alpha(0.5)
            ax.set_yticks(range(1, len(names) + 1), names if ax is axes[0] else [""] * len(names))
        ax.set_xlabel(_LABEL.get(m, m))
        ax.grid(axis="x", alpha=0.3)
    if not metrics:
        axes[0].text(0.5, 0.5, "no per-image metrics", ha="center", va="center")
        axes[0].set_axis_off()
    fig.suptitle("per-image distributions on the test split")
    return fig


def worst_pairs_figure(masks, fakes, reals, indices, *, titles=None, model: str = "") -> Figure:
    """Rows: mask | generated | real | |generated - real| for the given (worst) indices."""
    idx = list(indices)
    fig = Figure(figsize=(9.6, 2.5 * max(len(idx), 1)), layout="constrained")
    axes = fig.subplots(max(len(idx), 1), 4, squeeze=False)
    for r, i in enumerate(idx):
        diff = np.abs(np.asarray(fakes[i], float) - np.asarray(reals[i], float))
        panels = [(labels.colorize(np.asarray(masks[i])), None, dict(interpolation="nearest")),
                  (fakes[i], "gray", dict(vmin=0, vmax=1)), (reals[i], "gray", dict(vmin=0, vmax=1)),
                  (diff, "magma", dict(vmin=0, vmax=max(float(diff.max()), 1e-6)))]
        for c, (img, cm, kw) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(img, cmap=cm, **kw)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(titles[r] if titles else str(i), fontsize=8)
    for c, t in enumerate(["mask", f"generated ({model})" if model else "generated", "real", "|difference|"]):
        axes[0, c].set_title(t, fontsize=9)
    return fig


def sample_size_figure(curves: dict[str, list[dict]], *, what: str = "SEM encoder") -> Figure:
    """FD and KD against the number of images per set (mean ± sd over repeats): FD falls
    with n even between two sets of one distribution (its bias); KD stays level."""
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    ax_fd, ax_kd = fig.subplots(1, 2)
    for label, rows in curves.items():
        ns = sorted({r["n"] for r in rows})
        for ax, key in ((ax_fd, "fd"), (ax_kd, "kid")):
            mean = np.array([np.mean([r[key] for r in rows if r["n"] == n]) for n in ns])
            sd = np.array([np.std([r[key] for r in rows if r["n"] == n]) for n in ns])
            ax.errorbar(ns, mean, yerr=sd, marker="o", capsize=3, label=label)
    ax_fd.set_title(f"Frechet distance ({what} features)")
    ax_kd.set_title(f"kernel distance ({what} features)")
    for ax in (ax_fd, ax_kd):
        ax.set_xscale("log")
        ax.set_xlabel("images per set")
        ax.grid(alpha=0.3)
    ax_kd.axhline(0, color="k", lw=0.8)
    ax_fd.legend(fontsize=8)
    return fig


def model_gallery_figure(masks, fakes: dict[str, np.ndarray], reals, k: int = 3, *, titles=None) -> Figure:
    """Columns: mask | one column per model | real, for the first k test images."""
    names = list(fakes)
    k = min(k, len(masks))
    fig = Figure(figsize=(2.3 * (len(names) + 2), 2.4 * max(k, 1)), layout="constrained")
    axes = fig.subplots(max(k, 1), len(names) + 2, squeeze=False)
    for r in range(k):
        cols = [labels.colorize(np.asarray(masks[r]))] + [fakes[n][r] for n in names] + [reals[r]]
        for c, img in enumerate(cols):
            ax = axes[r, c]
            ax.imshow(img, cmap=None if c == 0 else "gray", vmin=None if c == 0 else 0, vmax=None if c == 0 else 1,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        if titles:
            axes[r, 0].set_ylabel(titles[r], fontsize=8)
    for c, t in enumerate(["mask"] + names + ["real"]):
        axes[0, c].set_title(t, fontsize=8)
    return fig
