"""Figures for SegSEM (SAM2 prompts, confidence, fallback threshold, fine-tuning).

Each function returns a matplotlib Figure built without pyplot and never calls show().
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from semlab.viz.figures import show_gray

__all__ = ["reliability_figure", "threshold_curve_figure", "prompts_figure", "finetune_history_figure",
           "method_ci_figure", "fallback_sweep_figure"]


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
    show_gray(ax, image, title)
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


def method_ci_figure(tables: Mapping[str, Mapping[str, Mapping | None]], *, metric_label: str = "mean |EPE| (nm)",
                     notes: Mapping[str, str] | None = None, title: str | None = None) -> Figure:
    """Means with 95 % CIs of one metric per method (rows) and test set (colours):
    `tables` = {test set: {method: {"mean", "ci_low", "ci_high"} or None}}. A method with
    None everywhere is drawn as a labelled gap ("unavailable"; `notes[method]` gives
    why, written once under the title), so a missing baseline is visible rather than
    silently absent."""
    import textwrap

    sets = list(tables)
    methods: list[str] = []
    for t in tables.values():
        methods += [m for m in t if m not in methods]
    k = len(sets)
    fig = Figure(figsize=(7.2, 0.3 * len(methods) * max(1.0, 0.3 * k) + 2.2), layout="constrained")
    ax = fig.subplots()
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray"]
    offs = (np.arange(k) - (k - 1) / 2) * (0.7 / max(k, 1))
    for j, ts in enumerate(sets):
        labelled = False
        for i, m in enumerate(methods):
            c = tables[ts].get(m)
            if not c or not np.isfinite(c["mean"]):
                continue
            ax.errorbar(c["mean"], i + offs[j], xerr=[[c["mean"] - c["ci_low"]], [c["ci_high"] - c["mean"]]],
                        fmt="o", ms=4, color=colours[j % len(colours)], capsize=2, lw=1,
                        label=None if labelled else ts)
            labelled = True
    reasons: list[str] = []
    for i, m in enumerate(methods):
        if all(not tables[ts].get(m) for ts in sets):
            why = (notes or {}).get(m)
            if why and why not in reasons:
                reasons.append(why)
            mark = f" ({'abcdefgh'[min(reasons.index(why), 7)]})" if why else ""
            ax.text(0.01, i, f"unavailable{mark}", transform=ax.get_yaxis_transform(), va="center", fontsize=7,
                    color="0.35")
    handles, labels_ = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels_, fontsize=7, loc="outside lower center", ncol=2)
    ax.set_yticks(range(len(methods)), methods, fontsize=8)
    ax.set_ylim(len(methods) - 0.5, -0.5)
    ax.set_xlabel(metric_label)
    ax.grid(axis="x", alpha=0.3)
    head = title or f"{metric_label}: mean and 95 % bootstrap CI over images"
    foot = [textwrap.fill(f"({'abcdefgh'[min(i, 7)]}) {r}", 80) for i, r in enumerate(reasons)]
    ax.set_title("\n".join([head] + foot), fontsize=8)
    return fig


def fallback_sweep_figure(sweep: Mapping, title: str | None = None) -> Figure:
    """The threshold ablation: the hybrid's pooled mean |EPE| (left axis) and fallback
    rate (right axis) against the confidence threshold, from
    `semlab.contours.experiment.ExperimentResult.sweep`; the last point ("always
    fallback") is the fallback alone, the SAM2-only level is dashed, and the per-fold
    calibrated thresholds are marked. Without SAM2 the reason is written on the plot:
    every threshold then gives the fallback (rate 1)."""
    t = np.asarray(sweep["thresholds"], float)
    err = np.asarray(sweep["mean_abs_epe_nm"], float)
    rate = np.asarray(sweep["fallback_rate"], float)
    finite = np.isfinite(t)
    x = t.copy()
    span = (t[finite].max() - t[finite].min()) if finite.sum() > 1 else 1.0
    x[~finite] = (t[finite].max() if finite.any() else 0.0) + 0.1 * span
    fig = Figure(figsize=(6.0, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.plot(x, err, "o-", color="tab:blue", ms=3, label="hybrid: pooled mean |EPE|")
    if np.isfinite(sweep.get("all_sam2", np.nan)):
        ax.axhline(sweep["all_sam2"], color="tab:green", ls="--", lw=1, label="SAM2 only")
    if np.isfinite(sweep.get("all_fallback", np.nan)):
        ax.axhline(sweep["all_fallback"], color="tab:orange", ls=":", lw=1, label="fallback only")
    for k, c in enumerate(sweep.get("calibrated") or []):
        if c is not None:
            ax.axvline(c if np.isfinite(c) else x[-1], color="tab:red", lw=0.8, alpha=0.6,
                       label="calibrated (per fold)" if k == 0 else None)
    ax.set_xticks(list(x[finite][:: max(1, finite.sum() // 6)]) + [x[-1]],
                  [f"{v:.2f}" for v in t[finite][:: max(1, finite.sum() // 6)]] + ["always\nfallback"], fontsize=7)
    ax.set_xlabel("confidence threshold (SAM2 where confidence >= threshold)")
    ax.set_ylabel("mean |EPE| (nm)")
    ax2 = ax.twinx()
    ax2.step(x, rate, where="mid", color="0.4", alpha=0.6, lw=1.2)
    ax2.set_ylabel("fallback rate (pattern structures)", color="0.4")
    ax2.set_ylim(-0.03, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    if not sweep.get("available", True):
        ax.text(0.5, 0.22, f"{sweep.get('reason')}\nevery threshold uses the fallback (rate 1)", transform=ax.transAxes,
                ha="center", va="center", fontsize=8, color="tab:red", wrap=True,
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "tab:red"})
    ax.set_title(title or f"threshold ablation ({sweep.get('n_structures', 0)} structures)", fontsize=9)
    return fig
