"""The noise estimators of `semlab fit-sim` (`semlab.data.fit`): the 2-D noise spectrum fitted
as white plus scan-correlated noise (`noise_fit`), and the poisson-gaussian level-vs-signal
curve (`noise_vs_signal`), and the scan wander of line edges (`wander_fit`). Split out of
`semlab.data.fit` (module size)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage, optimize

__all__ = ["kernel_psd", "noise_fit", "noise_vs_signal", "wander_fit"]


def kernel_psd(c: float, m: int) -> np.ndarray:
    """|transfer|^2 on m frequency bins of scipy's gaussian_filter1d(sigma=c, truncate=4),
    normalised to mean 1 (the simulator's detector noise is rescaled to its variance)."""
    if c <= 1e-3:
        return np.ones(m)
    delta = np.zeros(m)
    delta[0] = 1.0
    k = ndimage.gaussian_filter1d(delta, c, truncate=4.0, mode="wrap")
    p = np.abs(np.fft.fft(k)) ** 2
    return p / p.mean()


def noise_fit(img: np.ndarray, transposed: bool = False) -> dict[str, Any]:
    """Noise spectrum fit (module doc): A (white), B (correlated along x), c, scan-line var.

    The along-scan spectrum comes from the noise spectrum of the difference of neighbouring
    rows (columns when `transposed`, i.e. horizontal lines), where structure that runs along
    that axis cancels: S_D = S * 4 sin^2(pi f) along the differencing axis, divided out."""
    from scipy.stats import gamma

    from semlab.noise import noise_sigma, noise_spectrum

    P, S = noise_spectrum(img)
    m = S.shape[0]
    fy = np.fft.fftfreq(m)
    _, SD = noise_spectrum(np.diff(img, axis=1 if transposed else 0))
    if transposed:  # difference along x: divide 4 sin^2(pi fx) out, away from fx = 0
        fac = 4 * np.sin(np.pi * fy) ** 2
        ok = np.abs(fy) * m >= 3
        sx = np.full(m, np.nan)
        sx[ok] = SD.mean(axis=0)[ok] / fac[ok]
    else:
        sx = SD.mean(axis=0) / float((4 * np.sin(np.pi * fy) ** 2).mean())
        ok = np.abs(fy) * m >= 1  # the fx = 0 column holds the scan-line offsets
    best = best_all = None
    for c in np.r_[0.0, np.arange(0.2, 5.01, 0.05)]:
        g = kernel_psd(float(c), m)
        A = np.stack([np.ones(m), g], axis=1)[ok]
        coef, *_ = optimize.nnls(A, sx[ok])
        err = float(((A @ coef - sx[ok]) ** 2).sum())
        if best is None or err < best[0] - 1e-15:
            best = (err, float(c), float(coef[0]), float(coef[1]))
        # all of the noise through one kernel (the simulator's scan_corr_px): log-spectrum error
        k = float(np.exp(np.mean(np.log(np.maximum(sx[ok], 1e-30)) - np.log(g[ok]))))
        err_all = float(((np.log(np.maximum(sx[ok], 1e-30)) - np.log(k * g[ok])) ** 2).sum())
        if best_all is None or err_all < best_all[0] - 1e-15:
            best_all = (err_all, float(c))
    _, c, a_white, b_corr = best
    # scan-line offsets: excess power in the fx = 0 column of the periodogram; a row offset
    # of variance v puts 2 m v / 3 there through the periodic Hann window (module doc)
    h, w = img.shape
    step = max(1, m // 2)
    n_seg = len(range(0, h - m + 1, step)) * len(range(0, w - m + 1, step))
    shape = max(n_seg / 1.06, 1.0)
    med = gamma.ppf(0.5, shape) / shape
    rows = np.abs(fy) * m >= 3
    excess = float(np.median(P[rows, 0] / med - S[rows, 0]))
    scan_var = max(excess, 0.0) * 3.0 / (2.0 * m)
    return {"sigma": float(noise_sigma(img)), "white_var": a_white, "corr_var": b_corr, "corr_px": c,
            "corr_px_all": best_all[1],
            "scan_var": scan_var, "spectrum": S, "scan_profile": sx}


def noise_vs_signal(img: np.ndarray, *, bins: int = 12) -> dict[str, np.ndarray]:
    """The poisson-gaussian curve var(signal) = a * signal + b: pixels binned by their local
    mean (Gaussian of 2 px), variance of the white-noise-normalised Immerkaer residual per
    bin (flat pixels only: gradient magnitude below its median). Returns centres, var, n,
    and the weighted linear fit a, b. For white noise the level is exact; correlated noise
    reads low (use the spectrum fit for the level, this for the shape)."""
    k = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]]) / 6.0
    r = ndimage.correlate(img, k, mode="reflect")
    loc = ndimage.gaussian_filter(img, 2.0)
    gm = np.hypot(*np.gradient(loc))
    flat = (gm <= np.median(gm))
    flat[:2], flat[-2:], flat[:, :2], flat[:, -2:] = False, False, False, False
    s, rr = loc[flat], r[flat]
    edges = np.quantile(s, np.linspace(0, 1, bins + 1))
    idx = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, bins - 1)
    cen, var, n = [], [], []
    for i in range(bins):
        sel = idx == i
        if sel.sum() < 50:
            continue
        x = rr[sel]
        cen.append(float(s[sel].mean()))
        var.append(float((1.4826 * np.median(np.abs(x - np.median(x)))) ** 2))
        n.append(int(sel.sum()))
    cen, var, n = np.array(cen), np.array(var), np.array(n)
    if len(cen) >= 2 and np.ptp(cen) > 0:
        a, b = np.polyfit(cen, var, 1, w=np.sqrt(n))
    else:
        a, b = 0.0, float(var.mean()) if len(var) else 0.0
    return {"signal": cen, "var": var, "n": n, "a": float(a), "b": float(b)}


def wander_fit(cm: np.ndarray, rest: np.ndarray) -> tuple[float, float]:
    """Scan wander (px): (std, correlation length) of `cm`, the row displacement shared by
    all edges (their mean, tilt removed), with `rest` (edges x rows: each edge minus `cm`)
    giving its noise: the periodogram of the edges' own roughness over their number. The
    simulator's model (exponential correlation, Lorentzian spectrum A / (1 + (2 pi f L)^2),
    `semlab.data.placement`) plus that noise is fitted by Whittle likelihood on a grid over
    bins 2 to n/8 (bin 1, a bow across the whole frame, is left out); the std is the model's,
    sqrt(A atan(pi L) / (pi L)). (0, nan) when the excess over the noise is not significant."""
    n = len(cm)
    k = np.arange(2, max(n // 8, 6))
    p = (np.abs(np.fft.rfft(cm)) ** 2 / n)[k]
    pn = (np.mean(np.abs(np.fft.rfft(rest, axis=1)) ** 2, axis=0) / n / max(len(rest), 1))[k]
    f = k / n
    corr = np.geomspace(2.0, 4.0 * n, 48)[:, None, None]
    amp = np.geomspace(max(pn.mean(), 1e-9) * 1e-2, max(p.max(), 1e-9) * 1e2, 80)[None, :, None]
    m = amp / (1 + (2 * np.pi * f * corr) ** 2) + pn
    nll = (np.log(m) + p / m).sum(axis=2)
    i, j = np.unravel_index(np.argmin(nll), nll.shape)
    if (np.log(pn) + p / pn).sum() - nll[i, j] < 3.0:  # likelihood gain too small: no wander
        return 0.0, float("nan")
    a, c = float(amp[0, j, 0]), float(corr[i, 0, 0])
    return float(np.sqrt(a * np.arctan(np.pi * c) / (np.pi * c))), c
