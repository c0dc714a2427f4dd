"""Figures of the label-free segmentation checks (`semlab.segment.checks`): masks of
every real frame (crops) by each method, and the validation on simulated truth."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from semlab.viz.figures import axis_off, show_gray


def _outline(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    from semlab.segment.checks import pattern_of

    p = pattern_of(np.asarray(mask))
    return p & ~ndi.binary_erosion(p)


def segcheck_figure(crops: Sequence, masks: dict, methods: Sequence[str] | None = None,
                    max_frames: int | None = None) -> Figure:
    """One row per real frame crop (`semlab.segment.checks.RealCrop`): the crop, then
    per method the crop with the mask's pattern outline in colour. `masks` maps
    (frame name, method) to a canonical mask (`real_check_table(...)["masks"]`)."""
    from semlab.segment.checks import METHODS

    methods = list(methods or METHODS)
    crops = list(crops)[:max_frames] if max_frames else list(crops)
    if not crops:
        raise ValueError("segcheck_figure needs at least one frame")
    n, k = len(crops), len(methods) + 1
    fig = Figure(figsize=(1.9 * k, 1.9 * n + 0.6), layout="constrained")
    axes = np.atleast_2d(fig.subplots(n, k))
    colours = {"old defaults": (1.0, 0.6, 0.0), "new defaults": (0.1, 0.9, 0.2), "blurred otsu": (0.2, 0.6, 1.0)}
    for i, cr in enumerate(crops):
        show_gray(axes[i, 0], cr.image, f"{cr.set}/{cr.frame} ({cr.split})")
        axes[i, 0].title.set_fontsize(6)
        for j, m in enumerate(methods, start=1):
            ax = axes[i, j]
            rgb = np.repeat(np.asarray(cr.image, np.float32)[..., None], 3, axis=2)
            mask = masks.get((cr.frame, m))
            if mask is not None:
                rgb[_outline(mask)] = colours.get(m, (1.0, 0.0, 1.0))
            ax.imshow(np.clip(rgb, 0, 1), interpolation="nearest")
            axis_off(ax)
            if i == 0:
                ax.set_title(m, fontsize=9)
    side = crops[0].image.shape[0]
    fig.suptitle(f"real frames (crops {side} px, centre of each frame above its data bar): pattern outlines; "
                 f"{len({c.set for c in crops})} sets, n={n} frames", fontsize=9)
    return fig


def validation_figure(validation: dict) -> Figure:
    """Per simulated set: each setting's true structure IoU against each check (lower
    is better), with the Spearman rho in the panel title."""
    rows = validation["rows"]
    keys = list(validation["rho"])
    if not keys:
        raise ValueError("validation holds no checks")
    fig = Figure(figsize=(2.6 * len(keys), 2.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(keys)))
    for ax, key in zip(axes, keys):
        v = validation["rho"][key]
        sel = [r for r in rows if r["preset"] == v["preset"] and np.isfinite(r.get(v["check"], np.nan))]
        ax.scatter([r[v["check"]] for r in sel], [r["iou"] for r in sel], s=14,
                   c=["tab:green" if r["setting"] == "new defaults" else "tab:blue" if r["setting"] == "blurred otsu"
                      else "0.5" for r in sel])
        ax.set_title(f"{v['check']} ({v['preset']})\nrho={v['rho']:.2f}{' kept' if v['kept'] else ''}", fontsize=8)
        ax.set_xlabel("check (lower is better)", fontsize=7)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("true structure IoU", fontsize=7)
    fig.suptitle(f"simulated (target): {validation['n_frames']} frames x {len({r['setting'] for r in rows})} settings, "
                 f"{validation['size']} px; green new defaults, blue blurred Otsu", fontsize=8)
    return fig
