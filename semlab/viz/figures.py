"""Figures for notebooks and reports.

Every function returns a ``matplotlib.figure.Figure`` built without pyplot, so no
figure is left open in pyplot's registry and nothing is shown: the caller displays
it (a notebook cell with ``%matplotlib inline`` renders a returned Figure) or saves it.
"""

from __future__ import annotations

import textwrap
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from semlab import labels

__all__ = [
    "sample_grid",
    "effect_ladder_figure",
    "real_vs_sim_figure",
    "label_legend_figure",
    "parameter_pairs_figure",
    "domain_name",
    "set_label",
]

DOMAINS = {"sim": "simulated (target)", "real": "real"}


def domain_name(domain: str | None) -> str:
    """How figures name the reference images of a domain: "simulated (target)" for
    ``"sim"``, "real" for ``"real"`` and the neutral "target" when the domain is not
    given, so that simulated images are never called real (design.md section 9)."""
    if domain is None:
        return "target"
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; valid: {', '.join(DOMAINS)} or None")
    return DOMAINS[domain]


def set_label(name: str, domain: str | None) -> str:
    """A set name as figures print it: the reference set "real" is renamed after its
    domain (see `domain_name`); other names are kept."""
    return domain_name(domain) if str(name) == "real" else str(name)


def with_domain(text: str, domain: str | None, n: int | None = None) -> str:
    """``text`` followed by the domain and n when known, e.g.
    "per-image distributions: simulated (target), n=45"."""
    parts = ([domain_name(domain)] if domain is not None else []) + ([f"n={n}"] if n is not None else [])
    return f"{text}: {', '.join(parts)}" if parts else text

def _label_classes():
    """(id, name, meaning, rgb) of the canonical classes."""
    return tuple((c.id, c.name, c.meaning, c.rgb) for c in labels.CLASSES)


def show_gray(ax, img, title=None):
    ax.imshow(np.asarray(img, dtype=np.float32), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def axis_off(ax):
    ax.set_xticks([])
    ax.set_yticks([])


def sample_grid(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray] | None = None,
    contours: Sequence[Sequence[np.ndarray]] | None = None,
    titles: Sequence[str] | None = None,
    ncols: int = 4,
) -> Figure:
    """Samples in columns (at most ``ncols`` per block); per sample, stacked views:
    the image, its mask coloured with the canonical palette (if ``masks``), and the
    image with its contours overlaid (if ``contours``; each contour an (N, 2) array of
    (row, col) points). One axes per view and sample, each with one image.
    """
    images = list(images)
    n = len(images)
    if n == 0:
        raise ValueError("sample_grid needs at least one image")
    if masks is not None and len(masks) != n:
        raise ValueError(f"{len(masks)} masks for {n} images")
    if contours is not None and len(contours) != n:
        raise ValueError(f"{len(contours)} contour lists for {n} images")
    views = ["image"] + (["mask"] if masks is not None else []) + (["contours"] if contours is not None else [])
    ncols = max(1, min(int(ncols), n))
    nblocks = -(-n // ncols)
    nrows = nblocks * len(views)
    fig = Figure(figsize=(2.3 * ncols, 2.3 * nrows + 0.2), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i in range(nblocks * ncols):
        block, col = divmod(i, ncols)
        for v, view in enumerate(views):
            ax = axes[block * len(views) + v, col]
            if i >= n:
                fig.delaxes(ax)
                continue
            title = None
            if v == 0:
                title = titles[i] if titles is not None and i < len(titles) else f"#{i}"
            if view == "image":
                show_gray(ax, images[i], title)
            elif view == "mask":
                ax.imshow(labels.colorize(masks[i]), interpolation="nearest")
                axis_off(ax)
            else:
                show_gray(ax, images[i])
                for c in contours[i]:
                    c = np.asarray(c, dtype=float)
                    if len(c) == 0:
                        continue
                    closed = np.vstack([c, c[:1]])
                    ax.plot(closed[:, 1], closed[:, 0], "-", color="#ff7f0e", lw=0.9)
                h, w = np.asarray(images[i]).shape[:2]
                ax.set_xlim(-0.5, w - 0.5)
                ax.set_ylim(h - 0.5, -0.5)
            if col == 0:
                ax.set_ylabel({"image": "image", "mask": "mask", "contours": "contours"}[view], fontsize=9)
    return fig


def effect_ladder_figure(ladder: Sequence[tuple[str, str, np.ndarray]], ncols: int = 4) -> Figure:
    """One panel per (name, description, image) step of an effect ladder, in order,
    on a fixed gray scale [0, 1] so brightness and contrast changes stay visible."""
    ladder = list(ladder)
    if not ladder:
        raise ValueError("effect_ladder_figure needs at least one step")
    n = len(ladder)
    ncols = max(1, min(int(ncols), n))
    nrows = -(-n // ncols)
    fig = Figure(figsize=(2.8 * ncols, 3.3 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        if i >= n:
            fig.delaxes(ax)
            continue
        name, desc, img = ladder[i]
        show_gray(ax, img, f"{i}. {name}")
        ax.set_xlabel("\n".join(textwrap.wrap(str(desc), 38)), fontsize=7.5)
    return fig


_REAL_COLORS = ["#1f77b4", "#17becf", "#2ca02c", "#9467bd", "#8c564b"]
_SIM_COLORS = ["#d62728", "#ff7f0e", "#e377c2", "#bcbd22", "#7f7f7f"]


def real_vs_sim_figure(
    real: Mapping[str, Sequence[np.ndarray]],
    sim: Mapping[str, Sequence[np.ndarray]],
    n_examples: int = 2,
    n_boot: int = 500,
) -> Figure:
    """Real and simulated crops side by side (one column per group, ``n_examples`` rows),
    then the intensity histograms of all groups and their mean radially averaged power
    spectra (log-log, with bootstrap 95% bands over crops). Real groups are drawn solid,
    simulated ones dashed. Empty groups are left out; ``real`` may be empty.
    """
    from semlab.metrics.spectral import mean_radial_spectrum

    groups = [("real", k, list(v)) for k, v in real.items() if len(v)]
    groups += [("sim", k, list(v)) for k, v in sim.items() if len(v)]
    if not groups:
        raise ValueError("real_vs_sim_figure needs at least one non-empty group")
    ng = len(groups)
    n_ex = max(1, int(n_examples))
    fig = Figure(figsize=(max(8.0, 2.4 * ng), 2.4 * n_ex + 3.4), layout="constrained")
    gs = fig.add_gridspec(2, 1, height_ratios=[2.4 * n_ex, 3.2])
    top = gs[0].subgridspec(n_ex, ng)
    bottom = gs[1].subgridspec(1, 2)
    colors, styles = [], []
    ir = isim = 0
    for kind, _, _ in groups:
        if kind == "real":
            colors.append(_REAL_COLORS[ir % len(_REAL_COLORS)]); styles.append("-"); ir += 1
        else:
            colors.append(_SIM_COLORS[isim % len(_SIM_COLORS)]); styles.append("--"); isim += 1
    for g, (kind, name, imgs) in enumerate(groups):
        for r in range(n_ex):
            ax = fig.add_subplot(top[r, g])
            if r < len(imgs):
                show_gray(ax, imgs[r], f"{kind}: {name}" if r == 0 else None)
                for side in ax.spines.values():
                    side.set_edgecolor(colors[g]); side.set_linewidth(2)
            else:
                ax.axis("off")
    ax_h = fig.add_subplot(bottom[0, 0])
    ax_s = fig.add_subplot(bottom[0, 1])
    bins = np.linspace(0.0, 1.0, 65)
    for g, (kind, name, imgs) in enumerate(groups):
        label = f"{kind}: {name} (n={len(imgs)})"
        vals = np.concatenate([np.asarray(im, dtype=np.float32).ravel() for im in imgs])
        ax_h.hist(vals, bins=bins, density=True, histtype="step", color=colors[g], ls=styles[g], lw=1.4, label=label)
        freq, mean, lo, hi = mean_radial_spectrum(imgs, n_boot=n_boot)
        ax_s.plot(freq, mean, color=colors[g], ls=styles[g], lw=1.4, label=label)
        ax_s.fill_between(freq, lo, hi, color=colors[g], alpha=0.2, lw=0)
    ax_h.set_xlabel("intensity")
    ax_h.set_ylabel("density")
    ax_h.set_title("intensity histograms", fontsize=10)
    ax_h.legend(fontsize=7)
    ax_s.set_xscale("log")
    ax_s.set_yscale("log")
    ax_s.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide on a short decade
    ax_s.set_xlim(right=0.5)
    ax_s.set_xlabel("spatial frequency (cycles / pixel)")
    ax_s.set_ylabel("power")
    ax_s.set_title("radially averaged power spectrum (mean, 95% band)", fontsize=10)
    ax_s.legend(fontsize=7)
    return fig


def label_legend_figure() -> Figure:
    """The canonical label classes: id, name, colour swatch and meaning."""
    classes = _label_classes()
    n = len(classes)
    fig = Figure(figsize=(7.0, 0.55 * n + 0.6), layout="constrained")
    ax = fig.subplots()
    swatches = labels.colorize(np.array([[c[0]] for c in classes], dtype=np.uint8))
    ax.imshow(swatches, extent=(0, 1, n, 0), interpolation="nearest", aspect="auto")
    for i, (cid, name, meaning, _) in enumerate(classes):
        ax.text(1.25, i + 0.5, f"{cid}  {name}", va="center", fontsize=10, fontweight="bold")
        ax.text(4.0, i + 0.5, meaning, va="center", fontsize=9)
        ax.add_patch(_outline(i))
    ax.set_xlim(-0.1, 12)
    ax.set_ylim(n + 0.05, -0.05)
    ax.axis("off")
    ax.set_title("canonical mask labels (id, name, meaning)", fontsize=10)
    return fig


def _outline(i: int):
    from matplotlib.patches import Rectangle

    return Rectangle((0, i), 1, 1, fill=False, edgecolor="0.5", lw=0.8)


def _as_frame(params):
    """A pandas DataFrame from a DataFrame, a {column: values} mapping or a list of row dicts."""
    import pandas as pd

    if isinstance(params, pd.DataFrame):
        return params.reset_index(drop=True)
    if isinstance(params, Mapping):
        lengths = {k: len(np.atleast_1d(v)) for k, v in params.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"parameter columns differ in length: {lengths}")
        return pd.DataFrame({k: np.atleast_1d(v) for k, v in params.items()})
    return pd.DataFrame(list(params))


def parameter_pairs_figure(params, *, vars: Sequence[str] | None = None, hue: str | None = None,
                           domain: str | None = None, title: str | None = None, kde: bool = False) -> Figure:
    """A pair plot of fitted parameters (one row per fit): histograms on the diagonal,
    scatter plots of every pair below it and, with `kde`, density contours above it
    (otherwise the upper triangle is left empty). `params` is a DataFrame, a
    {name: values} mapping or a list of row dicts; `vars` picks the numeric columns
    (default: all numeric ones but `hue`), `hue` colours by a column (e.g. the domain or
    the preset). Built on seaborn's axes-level functions on the axes of one Figure
    (``sns.pairplot``/``PairGrid`` would go through pyplot)."""
    import seaborn as sns

    df = _as_frame(params)
    if hue is not None and hue not in df:
        raise ValueError(f"hue column {hue!r} not among {list(df.columns)}")
    if vars is None:
        vars = [c for c in df.select_dtypes("number").columns if c != hue]
    vars = list(vars)
    missing = [v for v in vars if v not in df]
    if missing:
        raise ValueError(f"parameter column(s) {missing} not among {list(df.columns)}")
    if not vars or len(df) == 0:
        raise ValueError("parameter_pairs_figure needs at least one numeric parameter and one fit")
    k = len(vars)
    fig = Figure(figsize=(2.2 * k + 0.8, 2.2 * k + 0.5), layout="constrained")
    axes = fig.subplots(k, k, squeeze=False)
    palette = None
    if hue is not None:
        levels = list(dict.fromkeys(df[hue]))
        palette = dict(zip(levels, sns.color_palette(n_colors=len(levels))))
    for i, yv in enumerate(vars):
        for j, xv in enumerate(vars):
            ax = axes[i, j]
            if i == j:
                sns.histplot(df, x=xv, hue=hue, palette=palette, element="step", ax=ax, legend=False)
            elif i > j:
                sns.scatterplot(df, x=xv, y=yv, hue=hue, palette=palette, s=14, ax=ax, legend=False)
            elif kde and len(df) > 2:
                sns.kdeplot(df, x=xv, y=yv, hue=hue, palette=palette, levels=5, ax=ax, legend=False, warn_singular=False)
            else:
                ax.set_axis_off()
                continue
            ax.set_xlabel(xv if i == k - 1 else "")
            ax.set_ylabel((yv if i != j else "fits") if j == 0 else "")
    if palette:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], ls="", marker="o", color=c, label=f"{h} (n={int((df[hue] == h).sum())})")
                   for h, c in palette.items()]
        fig.legend(handles=handles, title=hue, loc="outside right upper", fontsize=8)
    fig.suptitle(title or with_domain("fitted parameters", domain, len(df)), fontsize=10)
    return fig
