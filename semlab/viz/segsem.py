"""Figures for SegSEM (SAM2 prompts, confidence, fallback threshold, fine-tuning).

Each function returns a matplotlib Figure built without pyplot and never calls show().
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from semlab.viz.figures import _show_gray

__all__ = ["reliability_figure", "threshold_curve_figure", "prompts_figure", "finetune_history_figure"]


def reliability_figure(table: Mapping, observed_label: str = "observed IoU", title: str | None = None) -> Figure:
    """Reliability diagram from `semlab.contours.confidence.reliability_table`: mean
    observed value per confidence bin (points sized by count) against the diagonal, and
    the histogram of confidences below. A reliable score lies on the diagonal."""
    edges = np.asarray(table["edges"], float)
    count = np.asarray(table["count"])
    mc = np.asarray(table["mean_confidence"], float)
    mo = np.asarray(table["mean_observed"], float)
    fig = Figure(figsize=(4.2, 4.8), layout="constrained")
    ax, axh = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="perfectly reliable")
    filled = count > 0
    if filled.any():
        sizes = 20 + 180 * count[filled] / count.max()
        ax.plot(mc[filled], mo[filled], "-", color="tab:blue", lw=1)
        ax.scatter(mc[filled], mo[filled], s=sizes, color="tab:blue", zorder=3, label="bins (size: count)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel(observed_label)
    ax.set_title(title or f"reliability (n={table.get('n', int(count.sum()))}, ECE {table.get('ece', float('nan')):.3f})",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    axh.bar(edges[:-1], count, width=np.diff(edges), align="edge", color="tab:gray", edgecolor="white")
    axh.set_xlabel("confidence")
    axh.set_ylabel("structures")
    return fig


def threshold_curve_figure(calibration, metric_label: str | None = None) -> Figure:
    """The hybrid's mean metric and SAM2's share against the fallback threshold (from
    `calibrate_threshold`), with the all-SAM2, all-fallback and oracle levels."""
    cal = calibration
    t = np.asarray(cal.thresholds, float)
    finite = np.isfinite(t)
    x = t.copy()
    x[~finite] = (t[finite].max() if finite.any() else 0.0) + 0.02  # "+inf": always fall back
    fig = Figure(figsize=(5.4, 3.4), layout="constrained")
    ax = fig.subplots()
    ax.step(x, cal.values, where="post", color="tab:blue", label="hybrid")
    ax.axhline(cal.all_sam2, color="tab:green", ls=":", label="SAM2 only")
    ax.axhline(cal.all_fallback, color="tab:orange", ls=":", label="fallback only")
    ax.axhline(cal.oracle, color="0.5", ls="--", lw=0.8, label="oracle")
    chosen_x = cal.threshold if np.isfinite(cal.threshold) else x[-1]
    ax.axvline(chosen_x, color="tab:red", ls="--", label=f"chosen {cal.threshold:.3f}")
    ax.set_xlabel("confidence threshold (SAM2 where confidence >= threshold)")
    ax.set_ylabel(metric_label or ("mean error" if cal.objective == "min_error" else "mean score"))
    ax2 = ax.twinx()
    ax2.step(x, cal.fractions, where="post", color="0.4", alpha=0.5, lw=1)
    ax2.set_ylabel("share of structures from SAM2", color="0.4")
    ax2.set_ylim(0, 1.05)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return fig


def prompts_figure(image: np.ndarray, prompts: Sequence, masks: Sequence | None = None,
                   title: str | None = None) -> Figure:
    """The image with each structure's box (cut structures dashed), positive (green +)
    and negative (red x) points, and optionally SAM2's masks (`StructureMask`s or bool
    arrays) as coloured outlines."""
    fig = Figure(figsize=(5.0, 5.0 * image.shape[0] / max(image.shape[1], 1) + 0.4), layout="constrained")
    ax = fig.subplots()
    _show_gray(ax, image, title)
    colours = [tuple(c) for c in np.random.default_rng(0).uniform(0.3, 1.0, size=(max(len(prompts), 1), 3))]
    if masks is not None:
        for k, m in enumerate(masks):
            arr = np.asarray(getattr(m, "mask", m), bool)
            if arr.any():
                ax.contour(arr.astype(float), levels=[0.5], colors=[colours[k % len(colours)]], linewidths=1.0)
    for k, p in enumerate(prompts):
        x0, y0, x1, y1 = p.box
        ax.add_patch(_rect(x0 - 0.5, y0 - 0.5, x1 - x0 + 1, y1 - y0 + 1, colours[k % len(colours)], bool(p.cut)))
        pts = np.asarray(p.points).reshape(-1, 2)
        lab = np.asarray(p.point_labels).reshape(-1)
        ax.plot(pts[lab == 1, 0], pts[lab == 1, 1], "+", color="lime", ms=8, mew=2)
        ax.plot(pts[lab == 0, 0], pts[lab == 0, 1], "x", color="red", ms=6, mew=1.5)
    ax.set_xlim(-0.5, image.shape[1] - 0.5)
    ax.set_ylim(image.shape[0] - 0.5, -0.5)
    return fig


def _rect(x, y, w, h, colour, dashed):
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, fill=False, edgecolor=colour, lw=1.2, ls="--" if dashed else "-")


def finetune_history_figure(history: Sequence[Mapping]) -> Figure:
    """Training and validation loss per epoch (and validation IoU) of a fine-tuning run."""
    fig = Figure(figsize=(5.4, 3.2), layout="constrained")
    ax = fig.subplots()
    ep = [h["epoch"] for h in history]
    ax.plot(ep, [h.get("train_loss") for h in history], "o-", label="train loss (augmented)")
    if any(h.get("val_loss") is not None for h in history):
        ax.plot(ep, [h.get("val_loss") for h in history], "s-", label="validation loss")
        ax2 = ax.twinx()
        ax2.plot(ep, [h.get("val_iou") for h in history], "^:", color="tab:green", label="validation IoU")
        ax2.set_ylabel("validation IoU", color="tab:green")
        ax2.set_ylim(0, 1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("BCE + Dice")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig
