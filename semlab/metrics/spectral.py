"""Radially averaged power spectra and noise estimates of SEM images.

Normalisation (Parseval). For an image ``x`` of shape (H, W), mean-subtracted and
multiplied by a window ``w`` (all ones for ``window=None``), the 2-D power is

    P(k) = |FFT2(w * x)(k)|**2 / sum(w**2)

so that ``sum_k P(k) / (H*W) == mean((w*x)**2) * H*W / sum(w**2)``; with no window this
is exactly the image variance (Parseval), and white Gaussian noise of variance s**2
has a flat expected spectrum E[P(k)] = s**2 for every window (the window's power is
divided out). The radial average groups frequencies |k| (in cycles per pixel) into
bins of width 1/N, N = min(H, W), centred on 1/N, 2/N, ..., 0.5 (Nyquist); DC (which
is zero after mean subtraction) and the corners beyond Nyquist are left out.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from semlab.arrays import as_gray_stack

__all__ = [
    "spectral_window",
    "power_spectra_2d",
    "radial_bins",
    "radial_power_spectra",
    "radial_power_spectrum",
    "mean_radial_spectrum",
    "noise_sigma_estimate",
    "spectral_slope",
    "log_spectrum_distance",
    "high_frequency_ratio",
]

def spectral_window(shape: tuple[int, int], window: str | None = "hann") -> np.ndarray:
    """The 2-D window (H, W) the spectra of semlab multiply an image by: ``"hann"``, the
    symmetric Hann (``np.hanning``, zero at the borders, reduces leakage) as an outer
    product; ``None`` (or "none", "boxcar", "rect"), all ones."""
    h, w = shape
    if window in (None, "none", "boxcar", "rect"):
        return np.ones((h, w))
    if window == "hann":
        return np.outer(np.hanning(h), np.hanning(w))
    raise ValueError(f"unknown window {window!r}; valid: 'hann', None")


def power_spectra_2d(stack: np.ndarray, *, window: str | None = "hann") -> np.ndarray:
    """Unshifted 2-D power (index [0, 0] is zero frequency; frequencies are
    np.fft.fftfreq) of each image of a float (N, H, W) stack, each mean-subtracted,
    windowed and normalised as in the module docstring."""
    x = np.asarray(stack, dtype=np.float64)
    win = spectral_window(x.shape[1:], window)
    xm = (x - x.mean(axis=(1, 2), keepdims=True)) * win
    return np.abs(np.fft.fft2(xm)) ** 2 / (win**2).sum()


def radial_bins(h: int, w: int, *, to_corner: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """``(kbin, freq, nbins)``: the radial bin of every unshifted frequency of an (H, W)
    spectrum, the bin centres in cycles/px and the number of bins. Bins have width 1/N
    (N = min(H, W)) and are centred on k/N (bin k covers [(k-0.5)/N, (k+0.5)/N)), for
    k = 1 .. N//2 (up to Nyquist) or, with `to_corner`, up to the corner of the frequency
    square (|f| = sqrt(fy_max**2 + fx_max**2)); bin 0 is DC."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    n = min(h, w)
    kbin = np.rint(np.sqrt(fy**2 + fx**2) * n).astype(np.int64)
    nbins = int(kbin.max()) if to_corner else n // 2
    return kbin, np.arange(1, nbins + 1) / n, nbins


def radial_power_spectra(images, *, window: str | None = "hann", to_corner: bool = False, chunk: int = 64
                         ) -> tuple[np.ndarray, np.ndarray]:
    """``(freq, S)``: the radially averaged power spectrum of every image of a stack
    (any form `semlab.arrays.as_gray_stack` takes, one size, at least 4 px a side;
    uint8/uint16 are scaled to [0, 1]), S of shape (N, n_bins): the mean of the 2-D power
    (`power_spectra_2d`) over the frequencies of each bin (`radial_bins`), DC left out.
    This is the one radial-spectrum implementation of semlab; `chunk` images are
    transformed at a time."""
    x = as_gray_stack(images, what="images for a spectrum", dtype=np.float64, value_range=None, min_size=4)
    kbin, freq, nbins = radial_bins(*x.shape[1:], to_corner=to_corner)
    keep = (kbin >= 1) & (kbin <= nbins)
    idx = kbin[keep]
    counts = np.bincount(idx, minlength=nbins + 1)[1:]
    out = np.empty((len(x), nbins))
    for s in range(0, len(x), chunk):
        p = power_spectra_2d(x[s:s + chunk], window=window)[:, keep]
        m = len(p)  # one bincount for the chunk: image i's bins are offset by i * (nbins + 1)
        offs = (np.arange(m)[:, None] * (nbins + 1) + idx[None, :]).ravel()
        sums = np.bincount(offs, weights=p.ravel(), minlength=m * (nbins + 1)).reshape(m, nbins + 1)[:, 1:]
        out[s:s + m] = sums / np.maximum(counts, 1)
    return freq, out


def radial_power_spectrum(img: np.ndarray, *, window: str | None = "hann") -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged 2-D power spectrum of a mean-subtracted gray image.

    Returns ``(freq, power)``: ``freq`` are bin centres in cycles per pixel
    (k/N for k = 1..N//2, N = min(H, W)); ``power`` is the mean of the 2-D power
    (normalised as in the module docstring) over the frequencies in each bin
    (`radial_power_spectra` of the one image).
    """
    x = np.asarray(img)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D gray image, got shape {x.shape}")
    freq, s = radial_power_spectra(x[None], window=window)
    return freq, s[0]


def mean_radial_spectrum(
    images: Iterable[np.ndarray],
    *,
    window: str | None = "hann",
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean radial power spectrum over images, with a bootstrap band over images.

    Returns ``(freq, mean, lo, hi)``; ``lo``/``hi`` are the (1-ci)/2 and (1+ci)/2
    percentiles of the mean spectrum over ``n_boot`` resamples of the images with
    replacement (a percentile bootstrap; with a single image the band collapses onto
    the mean). Images of different sizes are interpolated (log-power, linear in
    frequency) onto the frequency grid of the first image.
    """
    images = list(images)
    if not images:
        raise ValueError("mean_radial_spectrum needs at least one image")
    freq, first = radial_power_spectrum(images[0], window=window)
    rows = [first]
    for im in images[1:]:
        f, p = radial_power_spectrum(im, window=window)
        if f.shape == freq.shape and np.allclose(f, freq):
            rows.append(p)
        else:
            rows.append(np.exp(np.interp(freq, f, np.log(np.maximum(p, 1e-300)))))
    spec = np.stack(rows)
    mean = spec.mean(axis=0)
    if len(rows) == 1:
        return freq, mean, mean.copy(), mean.copy()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(rows), size=(n_boot, len(rows)))
    boot = spec[idx].mean(axis=1)
    alpha = (1.0 - ci) / 2.0
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha], axis=0)
    return freq, mean, lo, hi


def noise_sigma_estimate(img: np.ndarray) -> float:
    """Robust estimate of the standard deviation of additive *white* noise:
    `semlab.noise.immerkaer_sigma` (MAD of Immerkaer's 3x3 Laplacian-difference response,
    x 1.4826 / 6). It reads low for spatially correlated noise (about half the
    repeated-scan value on JPEG frames); `semlab.noise.noise_sigma` counts correlated
    noise fully."""
    from semlab.noise import immerkaer_sigma

    return immerkaer_sigma(img)


def spectral_slope(
    freq: Sequence[float], power: Sequence[float], *, fmin: float = 0.02, fmax: float = 0.25
) -> float:
    """Least-squares slope of log10(power) against log10(freq) for fmin <= f <= fmax.

    A power law P ~ f**beta gives ``beta``; white noise gives about 0, blurred
    structure strongly negative values. Returns NaN when fewer than 3 bins qualify.
    """
    f = np.asarray(freq, dtype=np.float64)
    p = np.asarray(power, dtype=np.float64)
    sel = (f >= fmin) & (f <= fmax) & (p > 0) & np.isfinite(p)
    if sel.sum() < 3:
        return float("nan")
    slope, _ = np.polyfit(np.log10(f[sel]), np.log10(p[sel]), 1)
    return float(slope)


def log_spectrum_distance(set_a: Sequence[np.ndarray], set_b: Sequence[np.ndarray], *,
                          window: str | None = "hann", fmin: float = 0.0) -> float:
    """RMS difference (in dB) between the mean radially averaged power spectra of two
    image sets, over the frequency bins above `fmin` (cycles/px): 0 for sets with the
    same spectrum; a generator's upsampling artifacts or missing noise show up here."""
    fa, pa = _mean_power(set_a, window)
    fb, pb = _mean_power(set_b, window)
    if fa.shape != fb.shape:
        raise ValueError("the two sets need images of the same size")
    keep = fa > fmin
    d = 10 * np.log10(np.maximum(pa[keep], 1e-30)) - 10 * np.log10(np.maximum(pb[keep], 1e-30))
    return float(np.sqrt(np.mean(d ** 2)))


def high_frequency_ratio(images: Sequence[np.ndarray], *, cutoff: float = 0.25,
                         window: str | None = "hann") -> float:
    """Share of the spectral power above `cutoff` cycles/px, from the mean radially
    averaged spectrum weighted by each ring's circumference (the number of frequencies
    in it, up to Nyquist): for white noise the share of ring weight above the cutoff
    (0.74 at 0.25 for a square image), near 0 for smooth images; GAN and upsampling
    artifacts raise it."""
    f, p = _mean_power(images, window)
    ring = 2 * np.pi * f  # frequencies per bin grow with the radius
    w = p * ring
    return float(w[f > cutoff].sum() / max(w.sum(), 1e-30))


def _mean_power(images, window):
    freq, s = radial_power_spectra(images, window=window)
    return freq, s.mean(axis=0)
