"""Figures for contour extraction (SegSEM): overlays, EPE distributions, EPE along edges.

Every function returns a ``matplotlib.figure.Figure`` built without pyplot and never
shows it. Contours are (N, 2) (row, col) px arrays (`semlab.contours.extract`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from semlab.viz.figures import axis_off, show_gray, with_domain

__all__ = ["contour_overlay_figure", "epe_distribution_figure", "epe_along_contour_figure", "contour_gallery_figure",
           "line_statistics_figure"]

TRUE_STYLE = {"color": "#39ff14", "linestyle": "--", "linewidth": 0.9}
PRED_COLORS = ("#ff3b30", "#00c8ff", "#ffb000", "#d65cff", "#ffffff")


def _methods(pred) -> dict[str, Sequence[np.ndarray]]:
    if pred is None:
        return {}
    if isinstance(pred, Mapping):
        return {str(k): v for k, v in pred.items()}
    return {"predicted": pred}


def _draw(ax, contours, **style) -> None:
    first = True
    for c in contours:
        a = np.asarray(c, np.float64)
        if len(a) < 2:
            continue
        if not np.array_equal(a[0], a[-1]):
            a = np.vstack([a, a[:1]])
        kw = dict(style)
        if not first:
            kw.pop("label", None)
        ax.plot(a[:, 1], a[:, 0], **kw)
        first = False


def contour_overlay_figure(image: np.ndarray, true: Sequence[np.ndarray] | None = None,
                           pred: Sequence[np.ndarray] | Mapping[str, Sequence[np.ndarray]] | None = None, *,
                           inset: tuple[float, float, float] | None = None, title: str | None = None,
                           linewidth: float = 0.9) -> Figure:
    """The image with the true contours (green, dashed) and one or more predicted
    contour sets (`pred`: a list, or {method: list}; solid, one colour each).

    `inset` = (row, col, size) px adds a zoomed view of that square (centre row/col),
    outlined on the main view: sub-pixel differences are invisible at full frame."""
    img = np.asarray(image, np.float32)
    methods = _methods(pred)
    fig = Figure(figsize=(9.0 if inset else 5.5, 5.0), layout="constrained")
    axes = fig.subplots(1, 2 if inset else 1, squeeze=False)[0]
    views = [(axes[0], None)]
    if inset:
        r, c, s = inset
        views.append((axes[1], (r - s / 2, r + s / 2, c - s / 2, c + s / 2)))
    for ax, box in views:
        show_gray(ax, img)
        if true is not None:
            _draw(ax, true, label="true", **{**TRUE_STYLE, "linewidth": linewidth})
        for k, (name, cs) in enumerate(methods.items()):
            _draw(ax, cs, label=name, color=PRED_COLORS[k % len(PRED_COLORS)], linewidth=linewidth)
        h, w = img.shape
        if box is None:
            ax.set_xlim(-0.5, w - 0.5)
            ax.set_ylim(h - 0.5, -0.5)
        else:
            r0, r1, c0, c1 = box
            ax.set_xlim(c0, c1)
            ax.set_ylim(r1, r0)
            ax.set_title(f"zoom: {inset[2]:g} px around ({inset[0]:g}, {inset[1]:g})", fontsize=9)
            axes[0].plot([c0, c1, c1, c0, c0], [r0, r0, r1, r1, r0], color="yellow", linewidth=0.8)
    if title:
        axes[0].set_title(title, fontsize=9)
    if true is not None or methods:
        axes[0].legend(loc="upper right", fontsize=7, framealpha=0.6)
    return fig


def _colour(k: int) -> str:
    c = PRED_COLORS[k % len(PRED_COLORS)]
    return "gray" if c == "#ffffff" else c


def epe_distribution_figure(epes: Mapping[str, np.ndarray], *, kind: str = "violin", unit: str = "px",
                            bins: int = 60, clip: float | None = None, domain: str | None = None) -> Figure:
    """Distribution of the signed per-point EPE of each method (`epes`: {method: values}),
    as violins (``sns.violinplot``; the median as a white dot and the 5-95 % range as a
    black bar) or overlaid histograms, each method with its n points. Positive EPE =
    edge outside the true pattern. `clip` limits the axis to +-clip (outliers are counted
    in the title, not hidden silently); `domain` ("sim" or "real") is named in the title."""
    if kind not in ("violin", "hist"):
        raise ValueError(f"kind {kind!r}; valid: 'violin', 'hist'")
    names = list(epes)
    if not names:
        raise ValueError("epe_distribution_figure needs at least one method")
    data = [np.asarray(epes[n], np.float64)[np.isfinite(np.asarray(epes[n], np.float64))] for n in names]
    if any(d.size == 0 for d in data):
        raise ValueError(f"no finite EPE values for {[n for n, d in zip(names, data) if d.size == 0]}")
    fig = Figure(figsize=(max(4.0, 1.3 * len(names) + 2.5), 3.6), layout="constrained")
    ax = fig.subplots()
    lim = clip if clip else max(float(np.percentile(np.abs(np.concatenate(data)), 99.5)), 1e-3)
    n_out = sum(int((np.abs(d) > lim).sum()) for d in data)
    if kind == "violin":
        import pandas as pd
        import seaborn as sns

        df = pd.DataFrame({"method": np.repeat(names, [d.size for d in data]),
                           "epe": np.clip(np.concatenate(data), -lim, lim)})
        sns.violinplot(df, x="method", y="epe", order=names, hue="method", hue_order=names,
                       palette={n: _colour(k) for k, n in enumerate(names)}, inner=None, cut=0, alpha=0.6,
                       density_norm="width", legend=False, ax=ax)
        for k, d in enumerate(data):
            lo, hi = np.percentile(d, [5, 95])
            ax.plot([k, k], [lo, hi], color="k", linewidth=1.5)
            ax.plot([k], [np.median(d)], "o", color="white", mec="k", ms=4)
        ax.set_xticks(range(len(names)), [f"{n} (n={d.size})\nmean {d.mean():+.2f}, |.| {np.abs(d).mean():.2f}"
                                          for n, d in zip(names, data)], fontsize=8)
        ax.set_xlabel("")
        ax.axhline(0, color="gray", linewidth=0.6)
        ax.set_ylabel(f"EPE ({unit}); + outside")
        ax.set_ylim(-lim, lim)
    else:
        edges = np.linspace(-lim, lim, bins + 1)
        for k, (n, d) in enumerate(zip(names, data)):
            ax.hist(np.clip(d, -lim, lim), bins=edges, histtype="step", linewidth=1.2, color=_colour(k),
                    label=f"{n} (n={d.size}, mean {d.mean():+.2f}, |.| {np.abs(d).mean():.2f})", density=True)
        ax.axvline(0, color="gray", linewidth=0.6)
        ax.set_xlabel(f"EPE ({unit}); + outside")
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
    head = with_domain("edge placement error per contour point", domain)
    ax.set_title(head + (f"\n({n_out} beyond +-{lim:.2g} clipped)" if n_out else ""), fontsize=9)
    return fig


def epe_along_contour_figure(image: np.ndarray, points: np.ndarray, epe: np.ndarray, *,
                             true: Sequence[np.ndarray] | None = None, unit: str = "px", vmax: float | None = None,
                             title: str | None = None, marker_size: float = 4.0) -> Figure:
    """The image with every evaluated predicted point coloured by its signed EPE
    (diverging colours, symmetric limits: red outside the true pattern, blue inside),
    the true contours thin in green if given. `points`/`epe` are
    `EdgeErrors.points`/`.epe` (`semlab.contours.metrics.edge_placement_error`)."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    e = np.asarray(epe, np.float64).ravel()
    if len(pts) != len(e):
        raise ValueError(f"{len(pts)} points but {len(e)} EPE values")
    fig = Figure(figsize=(6.2, 5.0), layout="constrained")
    ax = fig.subplots()
    show_gray(ax, image)
    if true is not None:
        _draw(ax, true, color="#39ff14", linewidth=0.4, alpha=0.6, label="true", zorder=2)
    ok = np.isfinite(e)
    v = vmax if vmax else max(float(np.percentile(np.abs(e[ok]), 99)) if ok.any() else 1.0, 1e-3)
    sc = ax.scatter(pts[ok, 1], pts[ok, 0], c=e[ok], cmap="coolwarm", vmin=-v, vmax=v, s=marker_size, linewidths=0,
                    zorder=3)
    cb = fig.colorbar(sc, ax=ax, shrink=0.85)
    cb.set_label(f"EPE ({unit}); + outside the true pattern")
    h, w = np.asarray(image).shape
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    axis_off(ax)
    if title:
        ax.set_title(title, fontsize=9)
    elif ok.any():
        ax.set_title(f"EPE along the contour: mean {e[ok].mean():+.2f}, mean |EPE| {np.abs(e[ok]).mean():.2f} {unit}",
                     fontsize=9)
    return fig


def contour_gallery_figure(panels: Sequence[Mapping], *, ncols: int = 2, linewidth: float = 0.8) -> Figure:
    """A grid of images with true (green, dashed) and predicted contours: `panels` is a
    list of {"image", "true" (optional), "pred" ({method: contours} or a list), "title"}.
    Used for failure galleries: the worst images of a method, each with its score."""
    n = len(panels)
    if n == 0:
        raise ValueError("contour_gallery_figure needs at least one panel")
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig = Figure(figsize=(4.2 * ncols, 4.2 * nrows + 0.3), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, p in zip(axes, panels):
        img = np.asarray(p["image"], np.float32)
        show_gray(ax, img)
        if p.get("true") is not None:
            _draw(ax, p["true"], label="true", **{**TRUE_STYLE, "linewidth": linewidth})
        for k, (name, cs) in enumerate(_methods(p.get("pred")).items()):
            _draw(ax, cs, label=name, color=PRED_COLORS[k % len(PRED_COLORS)], linewidth=linewidth)
        h, w = img.shape
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        if p.get("title"):
            ax.set_title(p["title"], fontsize=8)
    for ax in axes[n:]:
        ax.set_axis_off()
    handles, names = axes[0].get_legend_handles_labels()
    if handles:
        axes[0].legend(handles, names, loc="upper right", fontsize=7, framealpha=0.6)
    return fig


def line_statistics_figure(lines: Sequence[Mapping], *, unit: str = "nm", title: str | None = None,
                           domain: str | None = None) -> Figure:
    """Per-line statistics of line/space images: the distribution of line widths (CD,
    one point per line) and of the LER of each edge, per image (`lines`: dicts with
    image, cd, ler_left, ler_right, as `semlab.contours.experiment.RealLines.lines`),
    as jittered dots (``sns.stripplot``) with each image's median as a bar and its n in
    the tick label; `domain` ("sim" or "real") is named in the title."""
    import pandas as pd
    import seaborn as sns

    if not lines:
        raise ValueError("line_statistics_figure needs at least one line")
    names = list(dict.fromkeys(str(x["image"]) for x in lines))
    rows = [(str(x["image"]), "cd", float(x["cd"])) for x in lines]
    rows += [(str(x["image"]), "ler", float(v)) for x in lines for v in (x["ler_left"], x["ler_right"])]
    df = pd.DataFrame(rows, columns=["image", "what", "value"])
    df = df[np.isfinite(df["value"])]
    fig = Figure(figsize=(max(6.0, 1.6 * len(names) + 3.0), 3.6), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    palette = {n: _colour(k % (len(PRED_COLORS) - 1)) for k, n in enumerate(names)}
    for ax, what, lab, per in ((ax1, "cd", f"line width CD ({unit}), one point per line", "lines"),
                               (ax2, "ler", f"LER 3 sigma ({unit}), one point per edge", "edges")):
        d = df[df["what"] == what]
        if len(d):
            sns.stripplot(d, x="image", y="value", order=names, hue="image", hue_order=names, palette=palette,
                          size=4, alpha=0.6, jitter=0.18, legend=False, ax=ax)
        med = d.groupby("image")["value"].median()
        cnt = d.groupby("image")["value"].size()
        for k, name in enumerate(names):
            if name in med.index:
                ax.plot([k - 0.3, k + 0.3], [med[name]] * 2, color="k", lw=1.5)
        ax.set_xticks(range(len(names)), [f"{n}\nn={int(cnt.get(n, 0))} {per}" for n in names], fontsize=7,
                      rotation=15)
        ax.set_xlabel("")
        ax.set_ylabel(lab, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title or with_domain("measured line statistics (bar: median)", domain), fontsize=9)
    return fig
