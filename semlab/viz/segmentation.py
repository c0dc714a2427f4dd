"""Figures for dataset creation (notebook 10): segments, masks, QA, scores."""

from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from semlab import labels
from semlab.viz.figures import axis_off, show_gray, with_domain


def region_colors(regions: np.ndarray, seed: int = 0) -> np.ndarray:
    """Random but fixed colours for a region-id map (0 or negative: black), RGB uint8."""
    r = np.asarray(regions)
    n = int(r.max()) + 1 if r.size else 1
    lut = np.random.default_rng(seed).integers(40, 256, size=(max(n, 1), 3)).astype(np.uint8)
    out = lut[np.clip(r, 0, None)]
    out[r <= 0] = 0
    return out


def segmentation_grid(images: Sequence[np.ndarray], regions: Sequence[np.ndarray] | None,
                      masks: Sequence[np.ndarray], truths: Sequence[np.ndarray] | None = None,
                      titles: Sequence[str] | None = None) -> Figure:
    """One row per image: the image | the backend's raw segments (random colours) |
    the canonical mask | the ground truth (if given)."""
    n = len(images)
    if n == 0:
        raise ValueError("segmentation_grid needs at least one image")
    cols = ["image"] + (["raw segments"] if regions is not None else []) + ["canonical mask"]
    if truths is not None:
        cols.append("ground truth")
    fig = Figure(figsize=(2.3 * len(cols), 2.3 * n + 0.4), layout="constrained")
    axes = np.atleast_2d(fig.subplots(n, len(cols)))
    for i in range(n):
        k = 0
        show_gray(axes[i, k], images[i], (titles[i] if titles else None))
        k += 1
        if regions is not None:
            axes[i, k].imshow(region_colors(regions[i]), interpolation="nearest")
            axes[i, k].set_title(f"{len(np.unique(regions[i]))} regions", fontsize=8)
            axis_off(axes[i, k])
            k += 1
        axes[i, k].imshow(labels.colorize(masks[i]), interpolation="nearest")
        axis_off(axes[i, k])
        k += 1
        if truths is not None:
            axes[i, k].imshow(labels.colorize(truths[i]), interpolation="nearest")
            axis_off(axes[i, k])
    for k, c in enumerate(cols):
        axes[0, k].set_title(c if k else f"{c}\n{axes[0, 0].get_title()}", fontsize=9)
    return fig


def error_map(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """RGB: agreement in dim gray levels of the true class, disagreement in magenta
    (predicted pattern where truth is not) and cyan (missed pattern), other errors yellow."""
    out = (labels.colorize(truth).astype(np.float32) * 0.35).astype(np.uint8)
    wrong = pred != truth
    extra = wrong & (pred == labels.PATTERN)
    missed = wrong & (truth == labels.PATTERN)
    out[extra] = (255, 0, 255)
    out[missed] = (0, 220, 255)
    out[wrong & ~extra & ~missed] = (255, 220, 0)
    return out


def worst_cases_figure(images, preds, truths, scores: Sequence[float], titles: Sequence[str]) -> Figure:
    """The given cases (e.g. the lowest mean IoU): image | mask | truth | error map."""
    n = len(images)
    fig = Figure(figsize=(9.5, 2.4 * n + 0.5), layout="constrained")
    axes = np.atleast_2d(fig.subplots(n, 4))
    for i in range(n):
        show_gray(axes[i, 0], images[i], f"{titles[i]} · mIoU {scores[i]:.3f}")
        axes[i, 1].imshow(labels.colorize(preds[i]), interpolation="nearest")
        axes[i, 2].imshow(labels.colorize(truths[i]), interpolation="nearest")
        axes[i, 3].imshow(error_map(preds[i], truths[i]), interpolation="nearest")
        for a in axes[i, 1:]:
            axis_off(a)
    for a, t in zip(axes[0, 1:], ["segmented", "ground truth",
                                   "errors: magenta extra pattern,\ncyan missed pattern, yellow other"]):
        a.set_title(t, fontsize=8)
    return fig


def calibration_figure(scores: Mapping[float, float], best: float) -> Figure:
    """Mean IoU of the structure classes against the edge offset tried."""
    fig = Figure(figsize=(5.0, 3.0), layout="constrained")
    ax = fig.subplots()
    xs = sorted(scores)
    ax.plot(xs, [scores[x] for x in xs], "o-", color="tab:blue")
    ax.axvline(best, color="tab:red", ls="--", label=f"chosen {best:+.2f} px")
    ax.set_xlabel("edge offset (px; + moves pattern edges inwards)")
    ax.set_ylabel("mean IoU (calibration images)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def class_balance_figure(rows: Sequence[Mapping], classes: Sequence[str], *, domain: str | None = None,
                         points: bool = True) -> Figure:
    """Per-image class coverage (``sns.boxplot`` per class in its canonical colour,
    with every image as a dot when `points`) and the QA status counts (``sns.countplot``).
    Images with status "error" have no coverage and are left out of the boxes; the
    titles give n and, if given, the domain ("sim" or "real")."""
    import pandas as pd
    import seaborn as sns

    classes = list(classes)
    fig = Figure(figsize=(9.0, 3.4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[2, 1])
    good = [r for r in rows if r.get("status") != "error"]
    cov = pd.DataFrame([(c, float(r.get(f"coverage_{c}") or 0)) for r in good for c in classes],
                       columns=["class", "coverage"])
    palette = {c: np.array(labels.class_by_name(c).rgb) / 255 for c in classes}
    if len(cov):
        with warnings.catch_warnings():  # seaborn 0.13.2 passes matplotlib 3.11's deprecated `vert` to bxp
            warnings.filterwarnings("ignore", message="vert: bool was deprecated", category=DeprecationWarning)
            sns.boxplot(cov, x="class", y="coverage", order=classes, hue="class", hue_order=classes,
                        palette=palette, linecolor="0.3", fliersize=0 if points else 3, legend=False, ax=ax1,
                        medianprops={"color": "tab:red", "linewidth": 1.5})
        if points:
            sns.stripplot(cov, x="class", y="coverage", order=classes, color="0.55", size=3, alpha=0.8,
                          edgecolor="white", linewidth=0.3, jitter=0.2, ax=ax1)
    ax1.set_xlabel("")
    ax1.set_ylabel("fraction of the image")
    ax1.set_title(with_domain("class coverage per image", domain, len(good)), fontsize=9)
    status = pd.DataFrame({"status": [r.get("status") or "ok" for r in rows]})
    names = [s for s in ("ok", "flagged", "error") if (status["status"] == s).any()] or ["ok"]
    colours = {"ok": "tab:green", "flagged": "tab:orange", "error": "tab:red"}
    if len(status):
        sns.countplot(status[status["status"].isin(names)], x="status", order=names, hue="status",
                      hue_order=names, palette=colours, legend=False, ax=ax2)
    ax2.set_xlabel("")
    ax2.set_title(with_domain("mask QA", domain, len(rows)), fontsize=9)
    ax2.set_ylabel("images")
    return fig
