"""Figures for metric tables: per-image distributions, worst cases, sample-size bias."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from semlab import labels
from semlab.viz.figures import domain_name, with_domain

_LABEL = {"psnr": "PSNR (dB) ↑", "ssim": "SSIM ↑", "ms_ssim": "MS-SSIM ↑", "lpips": "LPIPS ↓"}


def metric_distributions_figure(per_image: dict[str, dict[str, np.ndarray]],
                                metrics=("psnr", "ssim", "ms_ssim", "lpips"), *, domain: str | None = None,
                                split: str = "test", points: bool = True) -> Figure:
    """Violins of per-image values, one panel per metric, one violin per model (its n
    in the tick label) with the quartiles dashed and, with `points`, every image as a
    dot: a mean hides whether a model is uniformly mediocre or mostly good with a few
    failures. `domain` ("sim" or "real") names the reference images in the title."""
    import pandas as pd
    import seaborn as sns

    metrics = [m for m in metrics if any(m in v for v in per_image.values())]
    models = list(per_image)
    rows = [(name, m, float(v)) for name in models for m in metrics
            for v in np.asarray(per_image[name].get(m, ()), float).ravel() if np.isfinite(v)]
    df = pd.DataFrame(rows, columns=["model", "metric", "value"])
    fig = Figure(figsize=(3.6 * max(len(metrics), 1), 0.45 * max(len(models), 1) + 2.2), layout="constrained")
    axes = fig.subplots(1, max(len(metrics), 1), squeeze=False)[0]
    palette = dict(zip(models, sns.color_palette(n_colors=max(len(models), 1))))
    for ax, m in zip(axes, metrics):
        d = df[df["metric"] == m]
        names = [n for n in models if (d["model"] == n).any()]
        if names:
            sns.violinplot(d, x="value", y="model", order=names, hue="model", hue_order=names, palette=palette,
                           inner="quart", cut=0, density_norm="width", alpha=0.5, legend=False, ax=ax)
            if points:
                sns.stripplot(d, x="value", y="model", order=names, color="0.15", size=2.5, alpha=0.6,
                              jitter=0.15, ax=ax)
            counts = d["model"].value_counts()
            ax.set_yticks(range(len(names)), [f"{n} (n={counts[n]})" for n in names] if ax is axes[0]
                          else [f"n={counts[n]}" for n in names], fontsize=8)
        ax.set_xlabel(_LABEL.get(m, m))
        ax.set_ylabel("")
        ax.grid(axis="x", alpha=0.3)
    if not metrics:
        axes[0].text(0.5, 0.5, "no per-image metrics", ha="center", va="center")
        axes[0].set_axis_off()
    n_img = int(df.groupby(["model", "metric"]).size().max()) if len(df) else 0
    fig.suptitle(with_domain(f"per-image distributions on the {split} split", domain, n_img or None))
    return fig


def worst_pairs_figure(masks, fakes, reals, indices, *, titles=None, model: str = "",
                       domain: str | None = None) -> Figure:
    """Rows: mask | generated | reference | |generated - reference| for the given (worst)
    indices; the reference column is named after `domain` ("simulated (target)", "real";
    "target" if not given)."""
    idx = list(indices)
    fig = Figure(figsize=(9.6, 2.5 * max(len(idx), 1)), layout="constrained")
    axes = fig.subplots(max(len(idx), 1), 4, squeeze=False)
    for r, i in enumerate(idx):
        diff = np.abs(np.asarray(fakes[i], float) - np.asarray(reals[i], float))
        panels = [(labels.colorize(np.asarray(masks[i])), None, dict(interpolation="nearest")),
                  (fakes[i], "gray", dict(vmin=0, vmax=1)), (reals[i], "gray", dict(vmin=0, vmax=1)),
                  (diff, "magma", dict(vmin=0, vmax=max(float(diff.max()), 1e-6)))]
        for c, (img, cm, kw) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(img, cmap=cm, **kw)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(titles[r] if titles else str(i), fontsize=8)
    for c, t in enumerate(["mask", f"generated ({model})" if model else "generated", domain_name(domain),
                          "|difference|"]):
        axes[0, c].set_title(t, fontsize=9)
    return fig


def sample_size_figure(curves: dict[str, list[dict]], *, what: str = "SEM encoder",
                       domain: str | None = None) -> Figure:
    """FD and KD against the number of images per set (mean ± sd over repeats, sd with
    ddof=1, drawn by ``sns.lineplot``): FD falls with n even between two sets of one
    distribution (its bias); KD stays level. `curves` = {pair label: rows with n, fd,
    kid}; the legend gives each pair's number of repeats."""
    import pandas as pd
    import seaborn as sns

    fig = Figure(figsize=(10, 3.6), layout="constrained")
    ax_fd, ax_kd = fig.subplots(1, 2)
    rows = [{"pair": label, "n": int(r["n"]), "fd": float(r["fd"]), "kid": float(r["kid"])}
            for label, rs in curves.items() for r in rs]
    df = pd.DataFrame(rows, columns=["pair", "n", "fd", "kid"])
    reps = {label: max((sum(1 for r in rs if r["n"] == n) for n in {r["n"] for r in rs}), default=0)
            for label, rs in curves.items()}
    df["pair"] = df["pair"].map(lambda p: f"{p} ({reps[p]} repeats)")
    for ax, key in ((ax_fd, "fd"), (ax_kd, "kid")):
        if len(df):
            sns.lineplot(df, x="n", y=key, hue="pair", errorbar="sd", err_style="bars", marker="o",
                         err_kws={"capsize": 3}, ax=ax, legend=ax is ax_fd)
    ax_fd.set_title(f"Frechet distance ({what} features)", fontsize=10)
    ax_kd.set_title(f"kernel distance ({what} features)", fontsize=10)
    if domain is not None:
        fig.suptitle(with_domain("distance against images per set", domain), fontsize=10)
    ax_fd.set_ylabel("FD (mean ± sd over repeats)")
    ax_kd.set_ylabel("KD (mean ± sd over repeats)")
    ns = sorted(set(df["n"]))
    for ax in (ax_fd, ax_kd):
        ax.set_xscale("log")
        if ns:
            ax.set_xticks(ns, [str(n) for n in ns])
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("images per set (n)")
        ax.grid(alpha=0.3)
    ax_kd.axhline(0, color="k", lw=0.8)
    if ax_fd.get_legend() is not None:
        ax_fd.legend(fontsize=8)
    return fig


def model_gallery_figure(masks, fakes: dict[str, np.ndarray], reals, k: int = 3, *, titles=None,
                         domain: str | None = None) -> Figure:
    """Columns: mask | one column per model | the reference images (named after
    `domain`), for the first k test images."""
    names = list(fakes)
    k = min(k, len(masks))
    fig = Figure(figsize=(2.3 * (len(names) + 2), 2.4 * max(k, 1)), layout="constrained")
    axes = fig.subplots(max(k, 1), len(names) + 2, squeeze=False)
    for r in range(k):
        cols = [labels.colorize(np.asarray(masks[r]))] + [fakes[n][r] for n in names] + [reals[r]]
        for c, img in enumerate(cols):
            ax = axes[r, c]
            ax.imshow(img, cmap=None if c == 0 else "gray", vmin=None if c == 0 else 0, vmax=None if c == 0 else 1,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        if titles:
            axes[r, 0].set_ylabel(titles[r], fontsize=8)
    for c, t in enumerate(["mask"] + names + [domain_name(domain)]):
        axes[0, c].set_title(t, fontsize=8)
    return fig
