"""Figures of mask fidelity (`semlab.metrics.fidelity`): input mask, generated image and
what the segmenter made of it; the scores with their CIs; the idealised-mask experiment."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from semlab import labels
from semlab.viz.figures import axis_off

__all__ = ["fidelity_examples_figure", "fidelity_scores_figure", "idealised_figure", "experiment_table_figure"]

_EDGE = "#ff9f1c"  # the input mask's edges drawn on images


def _edges(ax, mask) -> None:
    """The input mask's structure edges (pattern and holes) as thin lines."""
    m = np.asarray(mask)
    for region in (np.isin(m, (labels.PATTERN, labels.HOLE)), m == labels.HOLE):
        if region.any() and not region.all():
            ax.contour(region.astype(np.float32), levels=[0.5], colors=_EDGE, linewidths=0.6)


def _gray(ax, img, mask=None) -> None:
    ax.imshow(np.asarray(img, np.float32), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    if mask is not None:
        _edges(ax, mask)
    axis_off(ax)


def _mask(ax, mask) -> None:
    ax.imshow(labels.colorize(np.asarray(mask)), interpolation="nearest")
    axis_off(ax)


def fidelity_examples_figure(masks, images: Mapping[str, np.ndarray], fid: Mapping[str, object], k: int = 3, *,
                             titles: Sequence[str] | None = None, title: str = "") -> Figure:
    """Rows: the first `k` masks. Columns: the input mask, then per image set (models and
    the ceiling, in the order of `images`) the image with the input mask's edges drawn
    on it (orange) and the mask the segmenter found in it (`fid[name].predicted`), titled
    with that image's mIoU. `title` names the domain, set and n."""
    names = [n for n in images if n in fid]
    k = max(1, min(k, len(masks)))
    fig = Figure(figsize=(1.7 * (1 + 2 * len(names)), 1.8 * k + 0.6), layout="constrained")
    axes = fig.subplots(k, 1 + 2 * len(names), squeeze=False)
    for r in range(k):
        _mask(axes[r, 0], masks[r])
        if titles is not None and r < len(titles):
            axes[r, 0].set_ylabel(str(titles[r]), fontsize=7)
        for j, name in enumerate(names):
            s = fid[name]
            _gray(axes[r, 1 + 2 * j], images[name][r], masks[r])
            _mask(axes[r, 2 + 2 * j], s.predicted[r])
            axes[r, 2 + 2 * j].set_title(f"mIoU {s.per_image_miou[r]:.2f}", fontsize=7)
    axes[0, 0].set_title("input mask", fontsize=8)
    for j, name in enumerate(names):
        axes[0, 1 + 2 * j].set_title(name, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def _dot_whisker(ax, names, vals, *, ref: tuple[float, float, float] | None, xlabel: str) -> None:
    y = np.arange(len(names))
    v = np.array([x[0] for x in vals], float)
    lo = np.array([x[1] for x in vals], float)
    hi = np.array([x[2] for x in vals], float)
    err = np.vstack([np.nan_to_num(v - lo), np.nan_to_num(hi - v)])
    ax.errorbar(v, y, xerr=err, fmt="o", color="tab:blue", capsize=3)
    if ref is not None and np.isfinite(ref[0]):
        ax.axvspan(ref[1], ref[2], color="0.85", zorder=0)
        ax.axvline(ref[0], color="0.4", ls="--", lw=1, label="segmenter on target images (ceiling)")
        ax.legend(fontsize=7, loc="best")
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)


def fidelity_scores_figure(fid: Mapping[str, object], *, title: str = "", ceiling: str | None = None) -> Figure:
    """mIoU (higher is better) and EPE in nm (lower is better) per image set with 95% CIs;
    the ceiling row (`ceiling`, default `semlab.metrics.fidelity.CEILING`) as a dashed
    line with its interval shaded."""
    from semlab.metrics.fidelity import CEILING

    ceiling = ceiling or CEILING
    names = [n for n in fid if n != ceiling]
    ref = fid.get(ceiling)
    fig = Figure(figsize=(10, 0.5 * max(len(names), 1) + 1.6), layout="constrained")
    a, b = fig.subplots(1, 2, sharey=True)
    _dot_whisker(a, names, [fid[n].miou for n in names], ref=ref.miou if ref else None, xlabel="mIoU ↑")
    _dot_whisker(b, names, [fid[n].epe for n in names], ref=ref.epe if ref else None, xlabel="EPE (nm) ↓")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def idealised_figure(res, k: int = 3, *, title: str = "") -> Figure:
    """The idealised-mask experiment (`IdealisedResult`), first `k` masks: for the
    dataset masks and for their idealised versions, the input mask, the generated image
    (input edges in orange) and the segmenter's mask."""
    arms = list(res.masks)
    k = max(1, min(k, len(res.masks[arms[0]])))
    fig = Figure(figsize=(1.8 * 3 * len(arms), 1.9 * k + 0.6), layout="constrained")
    axes = fig.subplots(k, 3 * len(arms), squeeze=False)
    for j, arm in enumerate(arms):
        m, img, pred = res.masks[arm], res.images[arm], res.fidelity[arm].predicted
        for r in range(k):
            _mask(axes[r, 3 * j], m[r])
            _gray(axes[r, 3 * j + 1], img[r], m[r])
            _mask(axes[r, 3 * j + 2], pred[r])
            axes[r, 3 * j + 2].set_title(f"mIoU {res.fidelity[arm].per_image_miou[r]:.2f}", fontsize=7)
        axes[0, 3 * j].set_title(arm, fontsize=8)
        axes[0, 3 * j + 1].set_title(f"generated ({res.generator})", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def experiment_table_figure(res, *, title: str = "") -> Figure:
    """The idealised-mask experiment as a table: per arm mIoU, EPE (nm) and the stats
    detector's balanced accuracy against the target images, each with its 95% CI."""
    f = lambda t, d: "-" if not np.isfinite(t[0]) else f"{t[0]:.{d}f} [{t[1]:.{d}f}, {t[2]:.{d}f}]"  # noqa: E731
    cols = ["input masks", "mIoU ↑", "EPE (nm) ↓", "detector bal. acc. (0.5: looks real)"]
    rows = []
    for arm, s in res.fidelity.items():
        r = res.realism[arm]
        rows.append([arm, f(s.miou, 3), f(s.epe, 2), f((r["balanced_accuracy"], r["ci_low"], r["ci_high"]), 2)])
    fig = Figure(figsize=(9, 0.4 * len(rows) + 1.2), layout="constrained")
    ax = fig.subplots()
    ax.axis("off")
    tab = ax.table(cellText=rows, colLabels=cols, loc="center", cellLoc="center")
    tab.auto_set_font_size(False)
    tab.set_fontsize(8)
    tab.scale(1, 1.4)
    ax.set_title(title or f"generator: {res.generator}, n={res.change.n} masks per arm", fontsize=9)
    return fig
