"""Figures of `semlab fit-sim` (`semlab.data.fit`): every fitted quantity, real against the
simulation rendered with the fitted preset (itself measured by the same fit), with
bootstrap uncertainties over frames; and a side-by-side of real and simulated frames.

Each function returns a `matplotlib.figure.Figure` (never shown). Titles name the domain
(real / simulated), the set and the number of frames; the simulated side is never called
real.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

__all__ = ["QUANTITIES", "fit_comparison_figure", "quantities_figure", "side_by_side_figure"]

# (key of FitResult.per_frame, label, unit)
QUANTITIES = [("pattern_level", "plateau level", "gray"), ("background_level", "trench level", "gray"),
              ("hole_level", "hole level", "gray"), ("rim_amp", "rim amplitude", "gray"),
              ("halo_amp", "halo depth", "gray"), ("psf_sigma_nm", "beam blur sigma", "nm"),
              ("noise_sigma", "noise sigma", "gray"), ("noise_corr_px", "noise corr. along scan", "px"),
              ("scanline_sigma", "scan-line sigma", "gray"), ("ler_sigma_nm", "LER sigma (unbiased)", "nm"),
              ("ler_corr_nm", "LER corr. length", "nm"), ("pitch_nm", "pitch", "nm"),
              ("width_frac", "CD / pitch", ""), ("charging_amp", "charging gradient", "gray")]


def _label(fit, domain: str, set_name: str | None) -> str:
    return f"{domain}{': ' + set_name if set_name else ''} ({fit.n_frames} frame{'s' if fit.n_frames != 1 else ''})"


def _band(ax, x, ys, color, label):
    ys = np.asarray(ys, dtype=np.float64)
    m = np.nanmean(ys, axis=0)
    ax.plot(x, m, color=color, lw=1.5, label=label)
    if len(ys) > 1:  # bootstrap over frames: 95% band of the mean
        rng = np.random.default_rng(0)
        boots = np.stack([np.nanmean(ys[rng.integers(0, len(ys), len(ys))], axis=0) for _ in range(500)])
        lo, hi = np.nanquantile(boots, [0.025, 0.975], axis=0)
        ax.fill_between(x, lo, hi, color=color, alpha=0.25, lw=0)


def fit_comparison_figure(real, sim=None, *, set_name: str | None = None, sim_name: str = "fitted preset"
                          ) -> Figure:
    """Real against simulated, per quantity: mean edge profile (with the fitted model),
    noise variance against signal, the noise spectrum along the scan, the LER PSD (lines)
    and the intensity histogram; bands are 95% bootstrap intervals over frames. `real`,
    `sim`: `FitResult`s (`sim` from `fit_sim` on frames rendered with the fitted preset)."""
    fits = [(real, _label(real, "real", set_name), "C0")]
    if sim is not None:
        fits.append((sim, _label(sim, "simulated", sim_name), "C1"))
    fig = Figure(figsize=(13.0, 6.4), layout="constrained")
    axs = fig.subplots(2, 3)
    ax = axs[0, 0]
    for f, lab, c in fits:
        pf = f.profile["per_frame"]
        n = min(len(p[0]) for p in pf)
        _band(ax, pf[0][0][:n], [p[1][:n] for p in pf], c, lab)
        ax.plot(pf[0][0][:n], np.mean([p[2][:n] for p in pf], axis=0), color=c, ls="--", lw=1,
                label=f"{lab.split(':')[0]}: edge model fit")
    ax.set(xlabel="distance from edge (nm, + = pattern / film)", ylabel="gray", title="mean edge profile")
    ax.legend(fontsize=7)
    ax = axs[0, 1]
    for f, lab, c in fits:
        for i, nz in enumerate(f.noise["per_frame"]):
            v = nz["vs_signal"]
            ax.plot(v["signal"], v["var"], "o", ms=3, color=c, alpha=0.7, label=lab if i == 0 else None)
            xs = np.linspace(0, 1, 2) if len(v["signal"]) == 0 else np.linspace(min(v["signal"]), max(v["signal"]), 2)
            ax.plot(xs, v["a"] * xs + v["b"], color=c, lw=0.8)
    ax.set(xlabel="local mean signal", ylabel="noise variance (high-pass)", title="noise vs signal: var = a s + b")
    ax.legend(fontsize=7)
    ax = axs[0, 2]
    for f, lab, c in fits:
        prof = [nz["scan_profile"] for nz in f.noise["per_frame"]]
        m = len(prof[0])
        fx = np.fft.fftfreq(m)
        keep = fx > 0
        _band(ax, fx[keep], [np.asarray(p)[keep] for p in prof], c, lab)
    ax.set(xlabel="frequency along the scan (cycles/px)", ylabel="noise power", yscale="log",
           title="noise spectrum along the scan")
    ax.legend(fontsize=7)
    ax = axs[1, 0]
    shown = False
    for f, lab, c in fits:
        pf = f.ler_psd.get("per_frame") or []
        if pf:
            n = min(len(p[0]) for p in pf)
            x = pf[0][0][1:n]
            _band(ax, x, [np.maximum(p[1][1:n], 1e-6) for p in pf], c, lab)
            shown = True
    if shown:
        ax.set(xscale="log", yscale="log", xlabel="frequency (1/nm)", ylabel="PSD - noise floor (nm^3)",
               title="edge roughness PSD (unbiased)")
        ax.legend(fontsize=7)
    else:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no line edges: LER PSD not measured", ha="center", va="center", transform=ax.transAxes)
    ax = axs[1, 1]
    for f, lab, c in fits:
        h = [nz["vs_signal"]["hist"] for nz in f.noise["per_frame"]]
        _band(ax, (np.arange(64) + 0.5) / 64, h, c, lab)
    ax.set(xlabel="gray level", ylabel="density", title="intensity histogram")
    ax.legend(fontsize=7)
    _quantity_bars(axs[1, 2], fits)
    fig.suptitle(f"fit-sim {real.kind}: {fits[0][1]}" + (f" vs {fits[1][1]}" if sim is not None else "")
                 + f", {real.pixel_nm:.4g} nm/px", fontsize=10)
    return fig


def _quantity_bars(ax, fits) -> None:
    """Each quantity relative to the real mean, with the bootstrap 95% CI over frames."""
    real = fits[0][0]
    keys = [(k, lab) for k, lab, _ in QUANTITIES if k in real.uncertainty and np.isfinite(real.uncertainty[k][1])
            and abs(np.nanmean([p[k] for p in real.per_frame])) > 1e-9]
    y = np.arange(len(keys))
    for j, (f, lab, c) in enumerate(fits):
        vals, lo, hi = [], [], []
        for k, _ in keys:
            ref = float(np.nanmean([p[k] for p in real.per_frame]))
            m = float(np.nanmean([p.get(k, np.nan) for p in f.per_frame]))
            u = f.uncertainty.get(k, (0.0, m, m))
            vals.append(m / ref)
            lo.append((m - u[1]) / abs(ref))
            hi.append((u[2] - m) / abs(ref))
        ax.errorbar(vals, y + 0.15 * (j - 0.5), xerr=[np.maximum(lo, 0), np.maximum(hi, 0)], fmt="o", ms=4,
                    color=c, label=lab, capsize=2)
    ax.axvline(1.0, color="0.5", lw=0.8)
    ax.set_yticks(y, [lab for _, lab in keys], fontsize=7)
    ax.set(xlabel="value / real mean (95% bootstrap CI over frames)", title="fitted quantities")
    ax.legend(fontsize=7)


def quantities_figure(real, sim=None, *, set_name: str | None = None, sim_name: str = "fitted preset") -> Figure:
    """The per-quantity panel of `fit_comparison_figure` on its own (larger)."""
    fits = [(real, _label(real, "real", set_name), "C0")]
    if sim is not None:
        fits.append((sim, _label(sim, "simulated", sim_name), "C1"))
    fig = Figure(figsize=(6.5, 5.0), layout="constrained")
    _quantity_bars(fig.subplots(), fits)
    return fig


def side_by_side_figure(real_frames: Sequence[np.ndarray], sim_frames: Sequence[np.ndarray], *,
                        set_name: str | None = None, pixel_nm: float | None = None, crop: int = 256,
                        sim_name: str = "fitted preset") -> Figure:
    """Crops of real frames (top) and of frames simulated with the fitted preset (bottom),
    on one gray scale (the real frames' 0.5-99.5 percentiles)."""
    n = min(len(real_frames), len(sim_frames), 4)
    if n == 0:
        raise ValueError("side_by_side_figure needs at least one real and one simulated frame")
    real_frames, sim_frames = list(real_frames)[:n], list(sim_frames)[:n]
    lo, hi = np.percentile(np.concatenate([np.ravel(r) for r in real_frames]), [0.5, 99.5])
    fig = Figure(figsize=(2.8 * n, 5.8), layout="constrained")
    axs = np.atleast_2d(fig.subplots(2, n, squeeze=False))
    for row, (frames, name) in enumerate([(real_frames, f"real{': ' + set_name if set_name else ''}"),
                                          (sim_frames, f"simulated ({sim_name})")]):
        for i, img in enumerate(frames):
            a = np.asarray(img)
            c = min(crop, *a.shape)
            ax = axs[row, i]
            ax.imshow(a[:c, :c], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_axis_off()
            ax.set_title(f"{name} {i + 1}", fontsize=8)
    px = f", {pixel_nm:.4g} nm/px ({crop * pixel_nm:.0f} nm crops)" if pixel_nm else ""
    fig.suptitle(f"real ({len(real_frames)} frames) vs simulated with the fitted preset{px}", fontsize=10)
    return fig
