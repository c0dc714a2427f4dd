"""Figures for detector explanations (semlab.forensics.saliency): galleries of
attribution maps, class-averaged maps, region enrichment and attribution spectra.

Each function returns a ``matplotlib.figure.Figure`` (built without pyplot) and never
calls show().
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from semlab.viz.figures import axis_off, show_gray

__all__ = [
    "saliency_gallery",
    "class_average_figure",
    "region_enrichment_figure",
    "attribution_spectrum_figure",
]


def _scale(a: np.ndarray, percentile: float) -> float:
    """A robust colour limit: the `percentile` of |a| (so one hot pixel does not wash
    out the map), never zero."""
    v = float(np.percentile(np.abs(a), percentile)) if a.size else 0.0
    if not v > 0:
        v = float(np.abs(a).max()) if a.size else 0.0
    return v if v > 0 else 1.0


def _overlay(ax, image: np.ndarray, attr: np.ndarray, *, signed: bool, alpha: float, percentile: float):
    """Gray image with the attribution on top: signed in red (for the target) / blue
    (against), or |attribution| in a heat colour map; scaled per map."""
    show_gray(ax, image)
    v = _scale(attr, percentile)
    if signed:
        return ax.imshow(attr, cmap="RdBu_r", vmin=-v, vmax=v, alpha=alpha, interpolation="nearest")
    return ax.imshow(np.abs(attr), cmap="inferno", vmin=0.0, vmax=v, alpha=alpha, interpolation="nearest")


def saliency_gallery(
    images: Sequence[np.ndarray] | np.ndarray,
    maps: Mapping[str, np.ndarray],
    *,
    labels: Sequence[int] | None = None,
    probabilities: Sequence[float] | None = None,
    class_names: Sequence[str] = ("real", "generated"),
    max_rows: int = 8,
    signed: bool = False,
    alpha: float = 0.6,
    percentile: float = 99.0,
) -> Figure:
    """Rows = images, columns = the image | one overlay per method (``maps``: method
    name -> (N, H, W) attributions). Row titles give the true class (``labels``,
    0 real / 1 generated), the prediction and P(generated) (``probabilities``) when
    given. Each overlay is scaled to its own `percentile` of |attribution|: maps of
    different methods have different units, so compare where, not how much.
    ``signed=True`` shows red for evidence towards the explained side, blue against."""
    imgs = np.asarray(images, dtype=np.float32)
    if imgs.ndim == 2:
        imgs = imgs[None]
    if imgs.ndim != 3:
        raise ValueError(f"images must be (N, H, W), got shape {imgs.shape}")
    if not maps:
        raise ValueError("saliency_gallery needs at least one method in maps")
    n = imgs.shape[0]
    arrs = {}
    for name, m in maps.items():
        a = np.asarray(m, dtype=np.float32)
        if a.ndim == 2:
            a = a[None]
        if a.shape != imgs.shape:
            raise ValueError(f"maps[{name!r}] has shape {a.shape}, images {imgs.shape}")
        arrs[name] = a
    if labels is not None and len(labels) != n:
        raise ValueError(f"{len(labels)} labels for {n} images")
    if probabilities is not None and len(probabilities) != n:
        raise ValueError(f"{len(probabilities)} probabilities for {n} images")
    rows = min(n, int(max_rows))
    cols = 1 + len(arrs)
    fig = Figure(figsize=(2.2 * cols, 2.3 * rows + 0.5), layout="constrained")
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    for i in range(rows):
        parts = []
        if labels is not None:
            parts.append(f"true: {class_names[int(labels[i])]}")
        if probabilities is not None:
            p = float(probabilities[i])
            parts.append(f"pred: {class_names[int(p > 0.5)]} (p_gen={p:.2f})")
        show_gray(axes[i, 0], imgs[i], "\n".join(parts) or f"image {i}")
        for j, (name, a) in enumerate(arrs.items(), start=1):
            _overlay(axes[i, j], imgs[i], a[i], signed=signed, alpha=alpha, percentile=percentile)
            if i == 0:
                axes[i, j].set_title(name, fontsize=9)
    if rows < n:
        fig.suptitle(f"first {rows} of {n} images", fontsize=9)
    return fig


def _is_class_map(v: Any) -> bool:
    return hasattr(v, "map") and hasattr(v, "n")


def class_average_figure(
    class_maps: Mapping[str, Any],
    *,
    percentile: float = 99.5,
    cmap: str = "inferno",
) -> Figure:
    """Class-averaged maps from :func:`semlab.forensics.saliency.class_average_maps`:
    one panel per group ("real", "generated", "real/wrong", ...), one row per method
    when given ``{method: {group: ClassMap}}``. Panels of a row share one colour scale,
    so a group that draws more attribution somewhere looks brighter there. Plain
    (H, W) arrays are accepted in place of ClassMap objects."""
    if not class_maps:
        raise ValueError("class_average_figure needs at least one map")
    first = next(iter(class_maps.values()))
    nested = isinstance(first, Mapping)
    table = dict(class_maps) if nested else {"": class_maps}
    rows = len(table)
    cols = max(len(g) for g in table.values())
    if cols == 0:
        raise ValueError("class_average_figure got an empty group of maps")
    fig = Figure(figsize=(2.6 * cols + 0.8, 2.5 * rows + 0.3), layout="constrained")
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    for r, (method, groups) in enumerate(table.items()):
        arrays = {k: (np.asarray(v.map) if _is_class_map(v) else np.asarray(v)) for k, v in groups.items()}
        vmax = _scale(np.concatenate([a.ravel() for a in arrays.values()]), percentile)
        signed = any(a.min() < 0 for a in arrays.values())  # maps averaged with absolute=False
        im = None
        for c in range(cols):
            ax = axes[r, c]
            axis_off(ax)
            if c >= len(arrays):
                ax.set_axis_off()
                continue
            key = list(arrays)[c]
            v = groups[key]
            im = ax.imshow(arrays[key], cmap="RdBu_r" if signed else cmap, vmin=-vmax if signed else 0.0,
                           vmax=vmax, interpolation="nearest")
            title = f"{key} (n={v.n})" if _is_class_map(v) else key
            ax.set_title(f"{method}\n{title}" if method and c == 0 else title, fontsize=9)
        if im is not None:
            fig.colorbar(im, ax=list(axes[r, : len(arrays)]), shrink=0.8,
                         label="mean attribution" if signed else "mean |attribution|")
    return fig


def _results(res: Mapping[str, Any], key: str) -> dict[str, Mapping[str, Any]]:
    """A single result dict (it has `key`) or {method: result} -> {name: result}."""
    if key in res:
        return {"": res}
    if not res or not all(isinstance(v, Mapping) and key in v for v in res.values()):
        raise ValueError(f"expected a result dict (with {key!r}) or a mapping of method name -> such dicts")
    return dict(res)


def region_enrichment_figure(
    results: Mapping[str, Any],
    *,
    regions: Sequence[str] | None = None,
    log: bool = True,
) -> Figure:
    """Bar chart of region enrichment (attribution share / area share) from
    :func:`semlab.forensics.saliency.attribution_by_region`, one bar group per region,
    one bar per method (``{method: result}``) or a single result; error bars are the
    bootstrap CIs over images. The dashed line at 1 is "no preference"; regions with
    no pixels are left out. Log scale by default: 0.5 and 2 are equally far from 1."""
    table = _results(results, "enrichment")
    first = next(iter(table.values()))
    names = list(regions) if regions is not None else list(first["regions"])
    names = [r for r in names if any(np.isfinite(t["enrichment"].get(r, np.nan)) for t in table.values())]
    if not names:
        raise ValueError("no region with pixels and attribution to plot")
    fig = Figure(figsize=(1.3 * len(names) * max(1, len(table)) ** 0.5 + 2.5, 3.6), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(table)
    x = np.arange(len(names))
    for k, (method, t) in enumerate(table.items()):
        e = np.array([t["enrichment"].get(r, np.nan) for r in names])
        lo = np.array([t["enrichment_ci"].get(r, (np.nan, np.nan))[0] for r in names])
        hi = np.array([t["enrichment_ci"].get(r, (np.nan, np.nan))[1] for r in names])
        err = np.vstack([np.clip(e - lo, 0, None), np.clip(hi - e, 0, None)])
        err = np.where(np.isfinite(err), err, 0.0)
        ax.bar(x + (k - (len(table) - 1) / 2) * width, np.where(np.isfinite(e), e, 0.0), width,
               yerr=err, capsize=3, label=method or None)
    ax.axhline(1.0, color="k", ls="--", lw=1)
    area = first["area_share"]
    ax.set_xticks(x, [f"{r}\n{100 * area.get(r, np.nan):.0f}% of px" for r in names], fontsize=8)
    ax.set_ylabel("enrichment (attribution share / area share)")
    if log:
        ax.set_yscale("log")
    n = first.get("n_images")
    ax.set_title(f"where |attribution| goes (edge = within {first.get('edge_width_px')} px of a label boundary"
                 + (f", {n} images" if n else "") + ")", fontsize=9)
    if len(table) > 1 or next(iter(table)):
        ax.legend(fontsize=8)
    return fig


def attribution_spectrum_figure(spectra: Mapping[str, Any]) -> Figure:
    """Left: the normalised radially averaged power spectra of the attribution maps
    (one curve per method, from :func:`semlab.forensics.saliency.attribution_spectrum`)
    against the images' own (dashed), with the cutoff frequency. Right: the share of
    power above the cutoff, per method and for the images, with bootstrap CIs over
    images. A map above the image curve at high frequency means the detector's
    evidence oscillates at the pixel scale (noise, texture, upsampling artifacts)."""
    from semlab.metrics.pixel import bootstrap_ci

    table = _results(spectra, "freq")
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax, bx = fig.subplots(1, 2, width_ratios=[1.6, 1])
    first = next(iter(table.values()))
    f0 = np.asarray(first["freq"])
    ax.loglog(f0, np.asarray(first["image_power"]), "k--", lw=1.5, label="images")
    names, vals, los, his = [], [], [], []
    for method, s in table.items():
        label = method or "attribution"
        ax.loglog(np.asarray(s["freq"]), np.asarray(s["attribution_power"]), lw=1.5, label=label)
        m, lo, hi = bootstrap_ci(np.asarray(s["per_image_high_share"])[np.isfinite(s["per_image_high_share"])])
        names.append(label)
        vals.append(m)
        los.append(lo)
        his.append(hi)
    m, lo, hi = bootstrap_ci(np.asarray(first["per_image_image_high_share"]))
    names.append("images")
    vals.append(m)
    los.append(lo)
    his.append(hi)
    cut = float(first["cutoff"])
    ax.axvline(cut, color="gray", lw=1)
    ax.set_xlabel("spatial frequency (cycles/px)")
    ax.set_ylabel("share of power per bin")
    ax.set_title(f"spectrum of {first.get('of', 'attribution')} (each map scaled to unit power)", fontsize=9)
    ax.legend(fontsize=8)
    v = np.array(vals)
    err = np.vstack([np.clip(v - np.array(los), 0, None), np.clip(np.array(his) - v, 0, None)])
    err = np.where(np.isfinite(err), err, 0.0)
    colors = [f"C{i}" for i in range(len(names) - 1)] + ["k"]
    bx.bar(np.arange(len(names)), np.where(np.isfinite(v), v, 0.0), yerr=err, capsize=3, color=colors)
    bx.set_xticks(np.arange(len(names)), names, rotation=30, ha="right", fontsize=8)
    bx.set_ylim(0, 1)
    bx.set_ylabel(f"share of power above {cut:g} cycles/px")
    return fig
