"""Figures of the residual-noise study (notebook 45): residuals of real, generated and
injected images with their spectra and noise-vs-signal curves, and the detectors before
and after injection. Each returns a `matplotlib.figure.Figure` built without pyplot."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from semlab.viz.figures import domain_name

if TYPE_CHECKING:
    from semlab.forensics.injection import InjectionStudy

__all__ = ["residuals_figure", "before_after_figure", "noise_vs_signal"]


def noise_vs_signal(images: np.ndarray, clean: np.ndarray, bins: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """(bin centres of the clean level, std of image - clean per bin; NaN where < 50 px)."""
    c, r = np.asarray(clean, np.float64).ravel(), (np.asarray(images, np.float64) - clean).ravel()
    edges = np.linspace(np.quantile(c, 0.01), np.quantile(c, 0.99), bins + 1)
    idx = np.clip(np.digitize(c, edges) - 1, 0, bins - 1)
    std = np.array([r[idx == k].std() if (idx == k).sum() >= 50 else np.nan for k in range(bins)])
    return 0.5 * (edges[1:] + edges[:-1]), std


def residuals_figure(study: "InjectionStudy", generator: str, *, n: int = 2, crop: int = 64) -> Figure:
    """Rows: the real tile, the generated image and the injected one (of the same mask), each
    beside its residual (image minus its denoised version, on one gray scale); right: the
    residuals' mean radial power spectra and noise-vs-signal curves over the test split."""
    from semlab.forensics.injection import denoise
    from semlab.metrics.spectral import mean_radial_spectrum

    t = study.test
    sets = {domain_name(study.domain): t.real, generator: t.fakes[generator],
            f"{generator} + {study.chosen[generator]}": study.injected.fakes[generator]}
    k = min(n, t.n_pairs)
    m = min(12, t.n_pairs)
    clean = {name: np.stack([denoise(im) for im in imgs[:m]]) for name, imgs in sets.items()}
    res = {name: imgs[:m] - clean[name] for name, imgs in sets.items()}
    lim = max(float(np.quantile(np.abs(r), 0.99)) for r in res.values()) or 1.0
    fig = Figure(figsize=(2.0 * 2 * k + 6.5, 2.1 * len(sets)), layout="constrained")
    gs = fig.add_gridspec(len(sets), 2 * k + 2, width_ratios=[1] * (2 * k) + [1.6, 1.6])
    s = min(crop, t.real.shape[1])
    for row, (name, imgs) in enumerate(sets.items()):
        for j in range(k):
            a = fig.add_subplot(gs[row, 2 * j])
            a.imshow(imgs[j][:s, :s], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            a.set_title(f"{name}" if j == 0 else t.ids[j], fontsize=7)
            b = fig.add_subplot(gs[row, 2 * j + 1])
            b.imshow(res[name][j][:s, :s], cmap="gray", vmin=-lim, vmax=lim, interpolation="nearest")
            b.set_title("residual", fontsize=7)
            for ax in (a, b):
                ax.set_axis_off()
    ax_s = fig.add_subplot(gs[:, 2 * k])
    ax_n = fig.add_subplot(gs[:, 2 * k + 1])
    for name, r in res.items():
        f, p, lo, hi = mean_radial_spectrum(list(r), n_boot=200)
        line, = ax_s.loglog(f[1:], p[1:], label=name)
        ax_s.fill_between(f[1:], lo[1:], hi[1:], color=line.get_color(), alpha=0.2, lw=0)
        x, y = noise_vs_signal(sets[name][:m], clean[name])
        ax_n.plot(x, y, "o-", ms=3, label=name)
    ax_s.set(xlabel="cycles/px", ylabel="residual power", title="residual spectra")
    ax_n.set(xlabel="clean level (denoised)", ylabel="residual std", title="noise vs signal")
    ax_s.legend(fontsize=6)
    fig.suptitle(f"{domain_name(study.domain)}, test split, n = {m} images per set", fontsize=9)
    return fig


def before_after_figure(study: "InjectionStudy") -> Figure:
    """Balanced accuracy with 95% CIs of the retrained CNN, the stats and the spectrum
    detector, before and after injection, per generator; chance (0.5) and the goal (0.6)."""
    from semlab.forensics.injection_report import GOAL_POINT, detector_rows

    rows = detector_rows(study)
    gens = list(dict.fromkeys(r["generator"] for r in rows))
    dets = ("cnn", "stats", "spectrum")
    fig = Figure(figsize=(3.2 * len(gens) + 1, 3.2), layout="constrained")
    axes = fig.subplots(1, len(gens), squeeze=False)[0]
    for ax, g in zip(axes, gens):
        rs = [r for r in rows if r["generator"] == g]
        for i, r in enumerate(rs):
            for j, d in enumerate(dets):
                x = r[d]
                if not x:
                    continue
                v, lo, hi = x["balanced_accuracy"], x["ci_low"], x["ci_high"]
                pos = j + (i - 0.5) * 0.36
                ax.bar(pos, v, 0.34, color=("#888" if i == 0 else "#2a7ab9"),
                       label=("before" if i == 0 else "after injection") if j == 0 else None)
                ax.errorbar(pos, v, yerr=[[v - lo], [hi - v]], color="k", lw=1, capsize=2)
        ax.axhline(0.5, color="k", ls=":", lw=1)
        ax.axhline(GOAL_POINT, color="#c62828", ls="--", lw=1)
        ax.set_xticks(range(len(dets)), ["CNN (retrained)", "stats", "spectrum"], fontsize=7)
        ax.set_ylim(0.3, 1.02)
        ax.set_title(f"{g}: {study.chosen.get(g, '')}", fontsize=8)
    axes[0].set_ylabel("balanced accuracy (test)")
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"real vs generated, {domain_name(study.domain)} domain, n = {study.test.n_pairs} pairs "
                 "(dotted: chance; dashed: goal)", fontsize=9)
    return fig
