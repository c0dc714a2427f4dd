"""Figures of the residual-noise models (`semlab.noise.models`, notebook 45): residual
images, noise-vs-signal curves, radial spectra, and the model-selection scores of
`semlab.noise.inject.select_model`. Each returns a `matplotlib.figure.Figure` built
without pyplot; titles name the domain ("simulated (target)" or "real"), the set and n."""

from __future__ import annotations

import warnings
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from semlab.viz.figures import domain_name

__all__ = ["residual_images_figure", "noise_curves_figure", "spectra_figure", "model_scores_figure"]


def _title(what: str, domain: str | None, set_name: str | None, n: int | None, n_frames: int | None) -> str:
    bits = [domain_name(domain)] if domain is not None else []
    if set_name:
        bits.append(str(set_name))
    if n is not None:
        bits.append(f"n={n} tiles")
    if n_frames is not None:
        bits.append(f"{n_frames} frames")
    return f"{what}: {', '.join(bits)}" if bits else what


def residual_images_figure(panels: Mapping[str, tuple[np.ndarray, np.ndarray]], *, crop: int | None = 96,
                           domain: str | None = None, set_name: str | None = None,
                           n_frames: int | None = None) -> Figure:
    """One column per named panel (e.g. "real", "generated", "injected (spectral)"): the
    image on top, its residual (image - clean, clean known or `semlab.noise.models.denoise`)
    below, on one symmetric gray scale per row. `panels`: {name: (image, clean)}."""
    names = list(panels)
    if not names:
        raise ValueError("residual_images_figure: no panels")
    fig = Figure(figsize=(2.4 * len(names), 5.0), layout="constrained")
    axes = fig.subplots(2, len(names), squeeze=False)
    res = {k: np.asarray(v[0], np.float32) - np.asarray(v[1], np.float32) for k, v in panels.items()}
    lim = max(float(np.percentile(np.abs(r), 99.5)) for r in res.values()) or 1e-3
    for j, k in enumerate(names):
        img = np.asarray(panels[k][0])
        sl = (slice(0, crop), slice(0, crop)) if crop else (slice(None), slice(None))
        label = domain_name(domain) if k == "real" and domain is not None else k
        axes[0, j].imshow(img[sl], cmap="gray", vmin=0, vmax=1)
        axes[0, j].set_title(label, fontsize=9)
        axes[1, j].imshow(res[k][sl], cmap="gray", vmin=-lim, vmax=lim)
        axes[1, j].set_title(f"residual, std {res[k].std() * 255:.2f} GL", fontsize=8)
        for a in axes[:, j]:
            a.set_axis_off()
    fig.suptitle(_title("images and residuals", domain, set_name, None, n_frames), fontsize=10)
    return fig


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


def spectra_figure(sets: Mapping[str, Sequence[np.ndarray]], *, domain: str | None = None,
                   set_name: str | None = None, n_frames: int | None = None, bins: int = 64) -> Figure:
    """Radial mean amplitude spectra (`semlab.noise.models.radial_amplitude`, averaged over
    each named set's images), log scale, and each set's ratio to the first set in dB."""
    from semlab.noise.models import radial_amplitude

    names = list(sets)
    if not names:
        raise ValueError("spectra_figure: no sets")
    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    ax, ax2 = fig.subplots(1, 2)
    curves = {}
    for name in names:
        edges, _ = radial_amplitude(np.asarray(sets[name][0]), bins)
        with warnings.catch_warnings():  # radial bins a small image leaves empty stay NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            curves[name] = np.nanmean([radial_amplitude(np.asarray(i), bins)[1] for i in sets[name]], axis=0)
    f = 0.5 * (edges[1:] + edges[:-1])
    ref = curves[names[0]]
    for name in names:
        label = domain_name(domain) if name == "real" and domain is not None else name
        ax.semilogy(f, curves[name], label=f"{label} (n={len(sets[name])})")
        if name != names[0]:
            ax2.plot(f, 20 * np.log10(curves[name] / ref), label=label)
    ax2.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("radial frequency (cycles/px)")
    ax.set_ylabel("mean |FFT| (per px)")
    ax2.set_xlabel("radial frequency (cycles/px)")
    ax2.set_ylabel(f"dB vs {domain_name(domain) if names[0] == 'real' and domain else names[0]}")
    ax.legend(fontsize=8)
    if len(names) > 1:
        ax2.legend(fontsize=8)
    n = max(len(v) for v in sets.values())
    fig.suptitle(_title("radial amplitude spectra", domain, set_name, n, n_frames), fontsize=10)
    return fig


def model_scores_figure(selection: Mapping[str, Any], *, domain: str | None = None,
                        set_name: str | None = None) -> Figure:
    """The stats detector's balanced accuracy (95% CI) per noise model from
    `select_model`, the chosen one marked; 0.5 is chance."""
    scores = selection["scores"]
    kinds = list(scores)
    fig = Figure(figsize=(5.5, 0.5 + 0.45 * len(kinds)), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(kinds))
    ba = np.array([scores[k]["balanced_accuracy"] for k in kinds])
    lo = np.array([scores[k]["ci_low"] for k in kinds])
    hi = np.array([scores[k]["ci_high"] for k in kinds])
    colours = ["C3" if k == selection.get("chosen") else "C0" for k in kinds]
    ax.errorbar(ba, y, xerr=[ba - lo, hi - ba], fmt="none", ecolor="gray")
    ax.scatter(ba, y, c=colours, zorder=3)
    ax.axvline(0.5, color="k", lw=0.6, ls=":")
    ax.set_yticks(y, [f"{k} (chosen)" if k == selection.get("chosen") else k for k in kinds])
    ax.set_xlim(0.3, 1.0)
    ax.set_xlabel("stats detector balanced accuracy (95% CI)")
    r0 = scores[kinds[0]]
    n = f"n={r0.get('n_sim')} injected / {r0.get('n_real')} {domain_name(domain) if domain else 'target'} tiles"
    ax.set_title(_title(f"noise model choice on the {selection.get('split')} split", domain, set_name, None,
                        r0.get("n_frames_real")) + f"\n{n}", fontsize=9)
    return fig
