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
        scale = getattr(cr, "scale", 1)
        show_gray(axes[i, 0], cr.image, f"{cr.set}/{cr.frame} ({cr.split}{f', 1/{scale} scale' if scale > 1 else ''})")
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
    fig.suptitle(f"real frames (crops up to {side} px, centre of each frame above its data bar; coarse patterns "
                 f"block-averaged): pattern outlines; "
                 f"{len({c.set for c in crops})} sets, n={n} frames", fontsize=9)
    return fig


def validation_figure(validation: dict, ncols: int = 4) -> Figure:
    """Per (check, simulated set) of the first seed's run (`semlab.segment.checks_validate.
    validate_seeds`): the check (lower is better) against the true IoU of every
    (setting, frame) pair, with each seed's Spearman rho and whether the check is kept."""
    from semlab.segment.checks_validate import KIND_PRESET

    runs = validation["runs"]
    r0 = runs[0]
    keys = [k for k, v in r0["rho"].items() if k.split("@")[0] != "fraction_variation"]
    if not keys:
        raise ValueError("validation holds no per-frame checks")
    nrows = -(-len(keys) // ncols)
    fig = Figure(figsize=(2.5 * min(ncols, len(keys)), 2.4 * nrows + 0.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, min(ncols, len(keys)))).ravel()
    for ax, key in zip(axes, keys):
        v = r0["rho"][key]
        sel = [r for r in r0["rows"] if r["preset"] == v["preset"] and np.isfinite(r.get(v["check"], np.nan))]
        ax.scatter([r[v["check"]] for r in sel], [r["iou"] for r in sel], s=6, alpha=0.6,
                   c=["tab:green" if r["setting"] == "new defaults" else "tab:blue" if r["setting"] == "blurred otsu"
                      else "0.55" for r in sel])
        rhos = ", ".join(f"{r['rho'][key]['rho']:.2f}" for r in runs if key in r["rho"])
        kept = any(KIND_PRESET.get(k) == v["preset"] and v["check"] in c for k, c in validation["kept"].items())
        ax.set_title(f"{v['check']} ({v['preset']})\nrho {rhos}{' kept' if kept else ''}", fontsize=7)
        ax.set_xlabel("check (lower is better)", fontsize=6)
        ax.set_ylabel("true IoU", fontsize=6)
        ax.tick_params(labelsize=6)
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    fig.suptitle(f"simulated (target): {r0['n_images']} frames x {r0['n_settings']} settings per set, seeds "
                 f"{', '.join(str(r['seed']) for r in runs)}; green new defaults, blue blurred Otsu", fontsize=8)
    return fig
