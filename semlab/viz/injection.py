"""Figures of residual-noise injection (`semlab.noise`, `semlab inject`, notebook 45), one
set for the notebook and for folder-level model choice (`semlab.noise.inject.select_model`):

- `residuals_figure`: real, generated and injected images of the same masks beside their
  residuals, with the residuals' radial spectra and noise-vs-signal curves;
- `model_scores_figure`: the stats detector's balanced accuracy per noise model on the
  validation split, the chosen one marked (a `select_model` result, or one generator's
  entry of a study's `selection`);
- `noise_curves_figure`: noise sigma against the clean level, with a model's fitted curve;
- `before_after_figure`: the detectors before and after injection.

Each returns a `matplotlib.figure.Figure` built without pyplot; titles name the domain
("simulated (target)" or "real"), the set and n."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from semlab.viz.figures import domain_name

if TYPE_CHECKING:
    from semlab.forensics.injection import InjectionStudy

__all__ = ["residuals_figure", "before_after_figure", "noise_vs_signal", "model_scores_figure",
           "noise_curves_figure"]


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


def _title(what: str, domain: str | None, set_name: str | None, n: int | None, n_frames: int | None) -> str:
    bits = [domain_name(domain)] if domain is not None else []
    if set_name:
        bits.append(str(set_name))
    if n is not None:
        bits.append(f"n={n} tiles")
    if n_frames is not None:
        bits.append(f"{n_frames} frames")
    return f"{what}: {', '.join(bits)}" if bits else what


def noise_curves_figure(sets: Mapping[str, tuple[Sequence[np.ndarray], Sequence[np.ndarray]]],
                        models: Mapping[str, Any] | None = None, *, domain: str | None = None,
                        set_name: str | None = None, n_frames: int | None = None, bins: int = 12) -> Figure:
    """Noise sigma (gray levels, robust per bin) against the clean level, for each named
    set {name: (images, cleans)}, and the fitted curves sqrt(a clean + b) of the models
    that have one ({name: model with `a`, `b`})."""
    from semlab.noise.models import variance_curve

    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    ax = fig.subplots()
    n = 0
    for name, (imgs, cleans) in sets.items():
        cv = variance_curve(cleans, [np.asarray(i, np.float32) - c for i, c in zip(imgs, cleans)], bins=bins,
                            min_count=50)
        label = domain_name(domain) if name == "real" and domain is not None else name
        ax.plot(cv["level"], np.sqrt(cv["var"]) * 255, "o-", ms=3, label=f"{label} (n={len(imgs)})")
        n = max(n, len(imgs))
    x = np.linspace(0, 1, 50)
    for name, m in (models or {}).items():
        if hasattr(m, "a") and hasattr(m, "b"):
            ax.plot(x, np.sqrt(np.maximum(m.a * x + m.b, 0)) * 255, "--", label=f"model: {name}")
    ax.set_xlabel("clean level [0, 1]")
    ax.set_ylabel("noise sigma (gray levels)")
    ax.legend(fontsize=8)
    ax.set_title(_title("noise vs signal", domain, set_name, n or None, n_frames), fontsize=10)
    return fig


def model_scores_figure(selection: Mapping[str, Any], *, domain: str | None = None, set_name: str | None = None,
                        generator: str | None = None) -> Figure:
    """The stats detector's balanced accuracy (95% CI) per noise model, the chosen one
    marked; 0.5 is chance. `selection`: {"scores": {kind: {balanced_accuracy, ci_low,
    ci_high, ...}}, "chosen": kind, "split": ...}, as `select_model` returns it and as each
    generator's entry of `InjectionStudy.selection` holds it."""
    scores = selection["scores"]
    kinds = list(scores)
    if not kinds:
        raise ValueError("model_scores_figure: no scores")
    fig = Figure(figsize=(5.5, 0.9 + 0.45 * len(kinds)), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(kinds))
    ba = np.array([scores[k]["balanced_accuracy"] for k in kinds])
    lo = np.array([scores[k].get("ci_low", scores[k]["balanced_accuracy"]) for k in kinds])
    hi = np.array([scores[k].get("ci_high", scores[k]["balanced_accuracy"]) for k in kinds])
    colours = ["C3" if k == selection.get("chosen") else "C0" for k in kinds]
    ax.errorbar(ba, y, xerr=[ba - lo, hi - ba], fmt="none", ecolor="gray")
    ax.scatter(ba, y, c=colours, zorder=3)
    ax.axvline(0.5, color="k", lw=0.6, ls=":")
    ax.set_yticks(y, [f"{k} (chosen)" if k == selection.get("chosen") else k for k in kinds])
    ax.set_xlim(0.3, 1.02)
    ax.set_xlabel("stats detector balanced accuracy (95% CI)")
    r0 = scores[kinds[0]]
    n = (f"n={r0.get('n_sim', r0.get('n_pos'))} injected / {r0.get('n_real', r0.get('n_neg'))} "
         f"{domain_name(domain)} tiles")
    what = f"noise model choice on the {selection.get('split') or 'val'} split"
    what += f", {generator}" if generator else ""
    ax.set_title(_title(what, domain, set_name, None, r0.get("n_frames_real")) + f"\n{n}", fontsize=9)
    return fig
