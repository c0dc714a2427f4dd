"""Figures of the downstream experiment (`semlab.downstream.experiment.ExperimentResult`).

- `efficiency_figure`: data-efficiency curves: test mIoU (real domain: agreement with the
  reference masks) against the number of real training tiles, real-only and real +
  synthetic, with 95% CI bands; each synthetic source alone as a horizontal band.
- `predictions_figure`: test tiles, their reference masks and the predictions of chosen
  training sets side by side.
- `worst_cases_figure`: the test tiles where a training set does worst (lowest tile mIoU).

Every title names the domain, the set and n tiles / n frames of the test split.
Functions return a matplotlib Figure built without pyplot.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from semlab import labels

__all__ = ["efficiency_figure", "predictions_figure", "worst_cases_figure"]


def _short(spec: str, n: int = 48) -> str:
    """A legend label: long domain-randomised specs cut to `n` characters."""
    return spec if len(spec) <= n else spec[:n - 1] + "\u2026"


def _n_axis(rows: list[dict]) -> dict[int, int]:
    return {r["n_real"]: r["n_real_frames"] for r in rows if r["kind"] == "real"}


def efficiency_figure(result, *, width: float = 7.5, height: float = 4.2) -> Figure:
    """mIoU vs real training tiles (log x) with 95% CI bands (module docstring)."""
    rows = result.rows
    fig = Figure(figsize=(width, height))
    ax = fig.add_subplot(1, 1, 1)
    real = sorted((r for r in rows if r["kind"] == "real"), key=lambda r: r["n_real"])
    xs = [r["n_real"] for r in real]
    if real:
        ax.plot(xs, [r["miou"] for r in real], "o-", color="k", label="real only")
        ax.fill_between(xs, [r["miou_ci_low"] for r in real], [r["miou_ci_high"] for r in real], color="k", alpha=0.15)
    mixes: dict[str, list[dict]] = {}
    for r in rows:
        if r["kind"] == "real+synthetic":
            mixes.setdefault(r["train"].split("+", 1)[1], []).append(r)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for k, (src, rs) in enumerate(sorted(mixes.items())):
        rs = sorted(rs, key=lambda r: r["n_real"])
        c = colours[k % len(colours)]
        ax.plot([r["n_real"] for r in rs], [r["miou"] for r in rs], "s--", color=c, label=_short(f"real + {src}"))
        ax.fill_between([r["n_real"] for r in rs], [r["miou_ci_low"] for r in rs], [r["miou_ci_high"] for r in rs],
                        color=c, alpha=0.15)
    synth = [r for r in rows if r["kind"] == "synthetic"]
    lo_x, hi_x = (min(xs), max(xs)) if xs else (1, 10)
    for k, r in enumerate(synth):
        c = colours[(k + len(mixes)) % len(colours)]
        star = " (best on val)" if r.get("best_synthetic") else " (reference: test ranges)" if r.get("reference") else ""
        ax.hlines(r["miou"], lo_x, hi_x, colors=c, linestyles=":", label=_short(r["train"]) + f" only{star}")
        ax.fill_between([lo_x, hi_x], [r["miou_ci_low"]] * 2, [r["miou_ci_high"]] * 2, color=c, alpha=0.08)
    if len(set(xs)) > 1:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    frames = _n_axis(rows)
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{n}\n({frames.get(n, '?')} fr.)" for n in xs])
    ax.set_xlabel("real training tiles N (frames they come from)")
    ax.set_ylabel(result.metric)
    seeds = max((r.get("n_seeds", 1) for r in rows), default=1)
    ci = "95% CI: bootstrap over seeds x test tiles" if seeds > 1 else "95% CI: bootstrap over test tiles"
    ax.set_title(f"{result.domain_name}: data efficiency ({seeds} seed(s); {ci})\n{result.test_label}", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _runs_of(result, specs: Sequence[str]):
    out = []
    for s in specs:
        rs = [r for r in result.runs if r.spec == s]
        if not rs:
            raise KeyError(f"no training set {s!r} in the result; valid: {sorted({r.spec for r in result.runs})}")
        out.append(rs[0])
    return out


def _test(result, images, masks):
    if images is None or masks is None:
        if result.test is None:
            raise ValueError("pass the test images and masks (the result holds none)")
        return result.test.images, result.test.masks
    return images, masks


def predictions_figure(result, images: np.ndarray | None = None, masks: np.ndarray | None = None,
                       specs: Sequence[str] | None = None, *, n: int = 4, tile_size: float = 1.7) -> Figure:
    """`n` test tiles (evenly spread): image, reference mask, and each of `specs`'
    prediction (first seed); default specs: real (all tiles) and the best synthetic source.
    `images` / `masks`: the test tiles (default: those the result holds)."""
    images, masks = _test(result, images, masks)
    if specs is None:
        specs = ["real"] + [r["train"] for r in result.rows if r.get("best_synthetic")]
    runs = _runs_of(result, specs)
    idx = np.linspace(0, len(images) - 1, min(n, len(images))).round().astype(int)
    cols = 2 + len(runs)
    fig = Figure(figsize=(tile_size * cols, tile_size * len(idx) + 0.6))
    ref = "reference mask" if result.domain == "real" else "true mask (exact)"
    for i, j in enumerate(idx):
        panels = [(images[j], "gray", "image"), (labels.colorize(masks[j]), None, ref)]
        panels += [(labels.colorize(r.pred[j]), None, r.spec) for r in runs]
        for k, (a, cmap, title) in enumerate(panels):
            ax = fig.add_subplot(len(idx), cols, i * cols + k + 1)
            ax.imshow(a, cmap=cmap, vmin=0, vmax=255 if cmap else None, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=7)
    fig.suptitle(f"predicted masks beside the reference\n{result.test_label}", fontsize=8)
    fig.tight_layout()
    return fig


def worst_cases_figure(result, images: np.ndarray | None = None, masks: np.ndarray | None = None,
                       spec: str = "real", *, n: int = 4, tile_size: float = 1.7) -> Figure:
    """The `n` test tiles with the lowest tile mIoU for `spec` (first seed): image,
    reference, prediction, and the tile's mIoU."""
    images, masks = _test(result, images, masks)
    from semlab.downstream.score import tile_miou

    run = _runs_of(result, [spec])[0]
    classes = result.settings.get("classes_scored") or [0, 1]
    per = tile_miou(run.confusion, classes)
    order = np.argsort(np.nan_to_num(per, nan=-1.0))[:n]
    fig = Figure(figsize=(tile_size * 3, tile_size * len(order) + 0.6))
    for i, j in enumerate(order):
        for k, (a, cmap, title) in enumerate([(images[j], "gray", f"tile {j}: mIoU {per[j]:.2f}"),
                                              (labels.colorize(masks[j]), None, "reference"),
                                              (labels.colorize(run.pred[j]), None, spec)]):
            ax = fig.add_subplot(len(order), 3, i * 3 + k + 1)
            ax.imshow(a, cmap=cmap, vmin=0, vmax=255 if cmap else None, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=7)
    fig.suptitle(f"worst test tiles of {spec}\n{result.test_label}", fontsize=8)
    fig.tight_layout()
    return fig
