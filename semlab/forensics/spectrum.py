"""Fourier-spectrum forensics: where in frequency do generated SEM images differ from real ones?

Generators leave traces in the spectrum: transposed convolutions and nearest/bilinear
upsampling imprint periodic patterns at multiples of 1/stride (a checkerboard at
(0.5, 0.5) cycles/px, stripes at (0, 0.5) or (0.5, 0), traces of 2-fold upsampling at
0.25), and CNN generators often miss the high-frequency power of real detector noise
(Durall et al. 2020; Frank et al. 2020; Dzanic et al. 2020 separated real from fake
with 99% accuracy from the high-frequency spectrum of 8 images). CycleGAN also hides
information about its input in faint high-frequency patterns. This module measures
these effects on image sets:

* `compare_radial_spectra`: radially averaged power spectra of several sets with
  bootstrap confidence bands per frequency bin, and each set's ratio to the reference
  (real) set in dB with its own band.
* `mean_power_spectrum_2d` / `log_spectrum_difference`: the mean 2-D spectrum of a set
  and the generated-minus-real difference in dB (fftshifted: zero frequency centred).
* `find_spectral_peaks`: narrow periodic peaks in a set's mean 2-D spectrum (or in its
  ratio to a reference set), against a local median background, with a robust z-score,
  the frequency (fy, fx) in cycles/px, the period in px and an amplitude estimate.
* `cross_validate_spectrum_detector`: logistic regression on standardised log radial
  spectra with the same grouped folds and metrics as the CNN detectors of
  `semlab.forensics.detector`, so a notebook can say how much of the detectability is
  spectral.

Normalisation is that of `semlab.metrics.spectral`: for an image x, mean-subtracted and
multiplied by a window w (Hann by default), ``P(k) = |FFT2(w x)(k)|**2 / sum(w**2)``;
white noise of variance s**2 has the flat expectation s**2 at every frequency. Radial
spectra here may extend beyond Nyquist into the corners of the frequency square
(``to_corner=True``): bins above 0.5 cycles/px hold only diagonal frequencies, which is
where a checkerboard (|f| = 0.707) lives, and which `radial_power_spectrum` leaves out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
from scipy import ndimage

from semlab.arrays import as_gray_stack
from semlab.metrics.spectral import power_spectra_2d, radial_power_spectra

if TYPE_CHECKING:  # the torch-free parts of this module must not import torch
    from semlab.forensics.detector import DetectionResult

__all__ = [
    "power_spectrum_2d",
    "mean_power_spectrum_2d",
    "log_spectrum_difference",
    "radial_spectrum",
    "radial_spectra",
    "SpectrumComparison",
    "compare_radial_spectra",
    "SpectralPeak",
    "find_spectral_peaks",
    "spectral_features",
    "cross_validate_spectrum_detector",
]


# --------------------------------------------------------------------------- 2-D spectra


# image sets: float64, any finite values (a spectrum is taken of any intensity), >= 8 px a side
_SETS = {"dtype": np.float64, "value_range": None, "min_size": 8}


def power_spectrum_2d(img: np.ndarray, *, window: str | None = "hann") -> np.ndarray:
    """2-D power spectrum of one image, normalised as `semlab.metrics.spectral`
    (unshifted: index [0, 0] is zero frequency; frequencies are np.fft.fftfreq)."""
    x = np.asarray(img)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D gray image, got shape {x.shape}")
    return power_spectra_2d(as_gray_stack(x, what="image", dtype=np.float64, value_range=None), window=window)[0]


def _freq_axes(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return np.fft.fftshift(np.fft.fftfreq(h)), np.fft.fftshift(np.fft.fftfreq(w))


def mean_power_spectrum_2d(images, *, window: str | None = "hann", chunk: int = 64
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fy, fx, P)``: the mean 2-D power spectrum of a set, fftshifted (zero frequency
    at index [H//2, W//2]); `fy`, `fx` are the frequencies (cycles/px) of rows and
    columns. Averaging power (not log power) keeps a weak periodic component additive:
    its peak rises above a background whose fluctuations shrink as 1/sqrt(N)."""
    x = as_gray_stack(images, **_SETS)
    total = np.zeros(x.shape[1:])
    for s in range(0, len(x), chunk):
        total += power_spectra_2d(x[s:s + chunk], window=window).sum(axis=0)
    fy, fx = _freq_axes(*x.shape[1:])
    return fy, fx, np.fft.fftshift(total / len(x))


def log_spectrum_difference(real, fake, *, window: str | None = "hann", statistic: str = "log_mean"
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fy, fx, D)``: the generated-minus-real 2-D spectrum difference in dB, fftshifted.

    ``statistic="log_mean"`` (default): ``10 log10(mean P_fake / mean P_real)``, the
    ratio of the mean spectra (stable, additive for periodic artifacts);
    ``"mean_log"``: the difference of the mean per-image log spectra (the convention of
    Frank et al. 2020; it down-weights a few images with very strong structure).
    Positive = the generator puts more power at that frequency than real images have.
    """
    xr = as_gray_stack(real, what="real images", **_SETS)
    xf = as_gray_stack(fake, what="generated images", **_SETS)
    if xr.shape[1:] != xf.shape[1:]:
        raise ValueError(f"real images are {xr.shape[1:]} but generated images are {xf.shape[1:]}")
    tiny = 1e-30
    if statistic == "log_mean":
        fy, fx, pr = mean_power_spectrum_2d(xr, window=window)
        _, _, pf = mean_power_spectrum_2d(xf, window=window)
        d = 10 * np.log10(np.maximum(pf, tiny)) - 10 * np.log10(np.maximum(pr, tiny))
    elif statistic == "mean_log":
        lr = np.mean([10 * np.log10(np.maximum(p, tiny)) for p in power_spectra_2d(xr, window=window)], axis=0)
        lf = np.mean([10 * np.log10(np.maximum(p, tiny)) for p in power_spectra_2d(xf, window=window)], axis=0)
        fy, fx = _freq_axes(*xr.shape[1:])
        d = np.fft.fftshift(lf - lr)
    else:
        raise ValueError(f"statistic must be 'log_mean' or 'mean_log', got {statistic!r}")
    h, w = xr.shape[1:]
    d[h // 2, w // 2] = 0.0  # DC: zero power in both after mean subtraction
    return fy, fx, d


# --------------------------------------------------------------------------- radial spectra


def radial_spectrum(img: np.ndarray, *, window: str | None = "hann", to_corner: bool = True
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``(freq, power)`` of one image: `semlab.metrics.spectral.radial_power_spectrum`,
    optionally extended beyond Nyquist to the corners of the frequency square (the
    bins up to 0.5 are identical to it)."""
    x = np.asarray(img)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D gray image, got shape {x.shape}")
    freq, s = radial_spectra(x, window=window, to_corner=to_corner)
    return freq, s[0]


def radial_spectra(images, *, window: str | None = "hann", to_corner: bool = True, chunk: int = 64
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``(freq, S)``: radially averaged power spectra of every image, S of shape
    (N, n_bins): `semlab.metrics.spectral.radial_power_spectra` with images of at least
    8 px a side. Without `to_corner` each row equals `radial_power_spectrum(image)`."""
    return radial_power_spectra(as_gray_stack(images, **_SETS), window=window, to_corner=to_corner, chunk=chunk)


def _bootstrap_band(spectra: np.ndarray, n_boot: int, level: float, rng: np.random.Generator,
                    idx: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mean, lo, hi, bootstrap means (n_boot, bins)): a percentile bootstrap over images,
    drawn exactly as `semlab.metrics.spectral.mean_radial_spectrum` draws it (or with
    the given resample indices (n_boot, N), shared between paired sets)."""
    mean = spectra.mean(axis=0)
    n = len(spectra)
    if n == 1 or n_boot <= 0:
        return mean, mean.copy(), mean.copy(), np.repeat(mean[None], max(n_boot, 1), axis=0)
    if idx is None:
        idx = rng.integers(0, n, size=(n_boot, n))
    boot = spectra[idx].mean(axis=1)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(boot, [a, 1.0 - a], axis=0)
    return mean, lo, hi, boot


@dataclass
class SpectrumComparison:
    """Mean radial spectra of several image sets with bootstrap bands per bin.

    `power[name]` = (mean, lo, hi) arrays over `freq`; `ratio_db[name]` = (mean, lo, hi)
    of ``10 log10(mean power of the set / mean power of the reference)``, its band from
    independent bootstrap resamples of both sets (the reference's own entry is 0).
    `spectra[name]` holds the per-image spectra (N, bins) the bands were drawn from.
    """

    freq: np.ndarray
    power: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    ratio_db: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    reference: str
    n_images: dict[str, int]
    level: float = 0.95
    window: str | None = "hann"
    to_corner: bool = True
    spectra: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    paired: bool = False

    def to_rows(self) -> list[dict[str, Any]]:
        """Tidy rows: set, freq, power, power_lo, power_hi, ratio_db, ratio_db_lo, ratio_db_hi."""
        rows = []
        for name, (m, lo, hi) in self.power.items():
            rm, rlo, rhi = self.ratio_db[name]
            for i, f in enumerate(self.freq):
                rows.append({"set": name, "freq": float(f), "power": float(m[i]), "power_lo": float(lo[i]),
                             "power_hi": float(hi[i]), "ratio_db": float(rm[i]), "ratio_db_lo": float(rlo[i]),
                             "ratio_db_hi": float(rhi[i])})
        return rows

    def band_summary(self, bands: Sequence[tuple[float, float]] = ((0.0, 0.125), (0.125, 0.25), (0.25, 0.5),
                                                                 (0.5, 0.75)),
                     n_boot: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
        """Per set and frequency band (cycles/px, (lo, hi]): the ratio in dB of the set's
        mean power in the band to the reference's, with a bootstrap CI over images (a
        short table for notebooks: "the generator lacks 6 dB above 0.25 cycles/px").
        The band power is the plain mean over its bins, so a bin holding few
        frequencies (near DC, in the corners) counts as much as a crowded one."""
        a = (1 - self.level) / 2
        rng = np.random.default_rng(seed)
        rows = []
        for lo_f, hi_f in bands:
            sel = (self.freq > lo_f) & (self.freq <= hi_f)
            if not sel.any():
                continue
            band = {k: v[:, sel].mean(axis=1) for k, v in self.spectra.items()}
            if self.paired:  # the same resamples for every set (see compare_radial_spectra)
                idx = rng.integers(0, len(band[self.reference]), size=(n_boot, len(band[self.reference])))
                draws = {k: v[idx].mean(axis=1) for k, v in band.items()}
            else:
                draws = {k: v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(axis=1) for k, v in band.items()}
            for name in band:
                if name == self.reference:
                    continue
                point = 10 * np.log10(band[name].mean() / band[self.reference].mean())
                r = 10 * np.log10(draws[name] / draws[self.reference])
                q = np.quantile(r, [a, 1 - a])
                rows.append({"set": name, "band": f"({lo_f:g}, {hi_f:g}]", "ratio_db": float(point),
                             "ratio_db_lo": float(q[0]), "ratio_db_hi": float(q[1])})
        return rows


def compare_radial_spectra(sets: Mapping[str, Sequence[np.ndarray]], *, reference: str | None = "real",
                           window: str | None = "hann", to_corner: bool = True, n_boot: int = 1000,
                           level: float = 0.95, seed: int = 0, paired: bool = False) -> SpectrumComparison:
    """Mean radial power spectrum of each set (e.g. {"real": ..., "pix2pix": ...,
    "cyclegan": ...}) with a `level` percentile-bootstrap band over its images, and its
    ratio to the `reference` set in dB (None: the first set). All images must have one
    size (compare spectra at one pixel size). Bands are per bin, not simultaneous.

    `paired`: image i of every set comes from the same source (generated from real
    image i's mask): the sets are resampled with the same indices, so what the layouts
    have in common cancels in the ratio and its band is narrower (and honest). Without
    it the sets are resampled independently, right for unrelated sets."""
    if not sets:
        raise ValueError("compare_radial_spectra needs at least one image set")
    names = list(sets)
    ref = names[0] if reference is None else reference
    if ref not in sets:
        raise KeyError(f"reference set {ref!r} not among the sets; valid names: {', '.join(names)}")
    spectra, freq, shape = {}, None, None
    for name in names:
        x = as_gray_stack(sets[name], what=f"set {name!r}", **_SETS)
        if shape is not None and x.shape[1:] != shape:
            raise ValueError(f"set {name!r} has images of {x.shape[1:]}, the others {shape}")
        shape = x.shape[1:]
        freq, spectra[name] = radial_spectra(x, window=window, to_corner=to_corner)
    a = (1 - level) / 2
    shared = None
    if paired:
        sizes = {len(v) for v in spectra.values()}
        if len(sizes) != 1:
            raise ValueError(f"paired=True needs sets of one size, got {[len(v) for v in spectra.values()]}")
        shared = np.random.default_rng(seed).integers(0, sizes.pop(), size=(max(n_boot, 1), len(spectra[ref])))
    power, boots = {}, {}
    for i, name in enumerate(names):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), i]))
        m, lo, hi, boots[name] = _bootstrap_band(spectra[name], n_boot, level, rng, shared)
        power[name] = (m, lo, hi)
    tiny = 1e-300
    ratio = {}
    for name in names:
        m = 10 * np.log10(np.maximum(power[name][0], tiny) / np.maximum(power[ref][0], tiny))
        if name == ref:
            z = np.zeros_like(m)
            ratio[name] = (z, z.copy(), z.copy())
            continue
        r = 10 * np.log10(np.maximum(boots[name], tiny) / np.maximum(boots[ref], tiny))
        lo, hi = np.quantile(r, [a, 1 - a], axis=0)
        ratio[name] = (m, lo, hi)
    return SpectrumComparison(freq=freq, power=power, ratio_db=ratio, reference=ref,
                              n_images={k: len(v) for k, v in spectra.items()}, level=level, window=window,
                              to_corner=to_corner, spectra=spectra, paired=paired)


# --------------------------------------------------------------------------- peaks


@dataclass(frozen=True)
class SpectralPeak:
    """A narrow peak of a mean 2-D spectrum (one of each +-f pair is reported).

    fy, fx: frequency in cycles/px (rows, columns; in [0, 0.5] for fy, (-0.5, 0.5]
    for fx); freq: |f|; period_px: 1/|f| (the pattern's wavelength along its normal);
    period_y / period_x: 1/|fy|, 1/|fx| (inf along an axis without variation); z: robust
    z-score of the excess over the local background; excess_db: height above the
    background in dB; amplitude: estimated amplitude of a cosine at this frequency that
    would produce the excess power (in image intensity units; for frequencies made of
    0 and 0.5 only, a pattern such as a*(-1)**(x+y) gives a, a cosine with phase phi at
    those frequencies gives |a cos(phi)|).
    """

    fy: float
    fx: float
    freq: float
    period_px: float
    period_y: float
    period_x: float
    z: float
    excess_db: float
    amplitude: float

    def label(self) -> str:
        name = {(0.5, 0.5): "checkerboard", (0.5, 0.0): "row stripes", (0.0, 0.5): "column stripes"}
        kind = name.get((abs(self.fy), abs(self.fx)), "")
        return f"({self.fy:.3f}, {self.fx:.3f}) c/px, period {self.period_px:.2f} px" + (f" [{kind}]" if kind else "")

    def to_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in ("fy", "fx", "freq", "period_px", "period_y", "period_x", "z",
                                              "excess_db", "amplitude")}


def _line_aware_background(logp: np.ndarray, size: int) -> np.ndarray:
    """Local background of a log spectrum: the largest of a 2-D median and 1-D medians
    along rows and columns (periodic boundaries, as the spectrum is periodic).

    A narrow peak is an outlier for all three, so it never raises its own background.
    SEM spectra also carry *lines*: scan-line noise puts power all along fx = 0, a
    vertical grating along fy = 0. For a pixel on such a line, the 2-D median sees
    mostly off-line pixels and would flag the whole line; the 1-D median along the line
    follows it, and taking the maximum keeps lines from being reported as peaks while a
    peak sitting on a line still stands out above the line's own level.
    """
    b2 = ndimage.median_filter(logp, size=size, mode="wrap")
    line = 2 * size + 1
    brow = ndimage.median_filter(logp, size=(1, line), mode="wrap")
    bcol = ndimage.median_filter(logp, size=(line, 1), mode="wrap")
    return np.maximum(b2, np.maximum(brow, bcol))


def _canonical(fy: float, fx: float) -> tuple[float, float]:
    """One representative of the Hermitian pair {f, -f}, components in (-0.5, 0.5]."""
    def wrap(v: float) -> float:
        v = ((v + 0.5) % 1.0) - 0.5  # [-0.5, 0.5)
        return 0.5 if abs(v + 0.5) < 1e-12 else v

    a = (wrap(fy), wrap(fx))
    b = (wrap(-fy), wrap(-fx))
    return max(a, b)


def find_spectral_peaks(images, *, reference=None, window: str | None = "hann", threshold: float = 6.0,
                        fmin: float | None = None, median_size: int = 5, max_peaks: int = 20,
                        lobe: int = 2, line_scale: bool = True) -> list[SpectralPeak]:
    """Narrow periodic peaks in the mean 2-D power spectrum of a set of images.

    Method: the mean spectrum P (`mean_power_spectrum_2d`) is taken in log10; with a
    `reference` set (e.g. the real images) the map is instead the log ratio of the two
    mean spectra, so structure common to both (a grating's pitch, scan-line noise)
    cancels and only what the generator adds remains. The background is a
    line-aware local median (`median_size`, see `_line_aware_background`); the
    residual is turned into a robust z-score (median and 1.4826 x MAD over all
    frequencies with |f| >= `fmin`; with `line_scale`, spectral lines that fluctuate
    more than the rest are scored against their own spread); local maxima of the
    residual (3x3, periodic) with z >= `threshold` and some excess power are peaks.
    Each +-f pair is reported once, strongest first, at most `max_peaks`.

    On real images the finder also reports genuine periodic structure (a grating's
    pitch and harmonics, a contact array): pass the real set as `reference` to keep
    only what the generator adds; this works best for paired sets (each generated
    image made from a real image's mask), where the layouts cancel.

    `fmin` (cycles/px) excludes the steep low-frequency core around DC, where a
    median background is biased (default 3 bins: 3/min(H, W)). The amplitude sums the
    excess power over a (2 `lobe` + 1)^2 neighbourhood, which holds the Hann window's
    main lobe. The frequency resolution is one bin, 1/H by 1/W.
    """
    x = as_gray_stack(images, **_SETS)
    h, w = x.shape[1:]
    fy, fx, p = mean_power_spectrum_2d(x, window=window)
    tiny = 1e-30
    base = np.ones_like(p)
    if reference is not None:
        xr = as_gray_stack(reference, what="reference images", **_SETS)
        if xr.shape[1:] != (h, w):
            raise ValueError(f"reference images are {xr.shape[1:]} but images are {(h, w)}")
        _, _, base = mean_power_spectrum_2d(xr, window=window)
        base = np.maximum(base, tiny)
    logmap = np.log10(np.maximum(p, tiny)) - np.log10(base)
    if median_size < 3 or median_size % 2 == 0:
        raise ValueError(f"median_size must be odd and >= 3, got {median_size}")
    bg = _line_aware_background(logmap, median_size)
    resid = logmap - bg
    n = min(h, w)
    fmin = 3.0 / n if fmin is None else float(fmin)
    radius = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    valid = radius >= fmin - 1e-12
    r = resid[valid]
    med = np.median(r)
    mad = 1.4826 * np.median(np.abs(r - med))
    if mad <= 0:
        mad = np.std(r) or 1.0
    scale = mad
    if line_scale:
        # Lines of the spectrum (the axes of Manhattan layouts, scan-line noise) fluctuate
        # more from set to set than the rest. A row or column whose own robust spread
        # exceeds 1.5x the global one gets that spread as its scale, so its random
        # bumps are not reported as peaks; ordinary rows keep the global scale (a
        # per-row estimate from ~64 values would cost sensitivity everywhere).
        dev = np.where(valid, np.abs(resid - med), np.nan)
        with np.errstate(all="ignore"):
            row = 1.4826 * np.nanmedian(dev, axis=1)
            col = 1.4826 * np.nanmedian(dev, axis=0)
        row = np.where(np.isfinite(row) & (row > 1.5 * mad), row, mad)
        col = np.where(np.isfinite(col) & (col > 1.5 * mad), col, mad)
        scale = np.maximum(row[:, None], col[None, :])
    z = (resid - med) / scale
    # local maxima of the residual (not of z: the scale may differ between neighbours)
    is_max = (resid >= ndimage.maximum_filter(resid, size=3, mode="wrap")) & valid & (z >= threshold)
    excess = p - base * 10.0 ** bg  # linear power above the background
    found: dict[tuple[float, float], SpectralPeak] = {}
    for i, j in zip(*np.nonzero(is_max)):
        key = _canonical(float(fy[i]), float(fx[j]))
        rows = np.arange(i - lobe, i + lobe + 1) % h
        cols = np.arange(j - lobe, j + lobe + 1) % w
        s = float(excess[np.ix_(rows, cols)].sum())
        if s <= 0:  # a one-bin dip-and-spike of the log map with no excess power around it
            continue
        self_conj = all(abs(v) < 1e-12 or abs(abs(v) - 0.5) < 1e-12 for v in key)
        # a cosine of amplitude a puts a^2 HW/4 at +f and at -f (a^2 HW at once if f = -f)
        amp = math.sqrt(max(s, 0.0) / (h * w)) * (1.0 if self_conj else 2.0)
        f = math.hypot(*key)
        peak = SpectralPeak(fy=key[0], fx=key[1], freq=f, period_px=1.0 / f if f > 0 else math.inf,
                            period_y=1.0 / abs(key[0]) if key[0] else math.inf,
                            period_x=1.0 / abs(key[1]) if key[1] else math.inf,
                            z=float(z[i, j]), excess_db=float(10 * resid[i, j]), amplitude=amp)
        if key not in found or peak.z > found[key].z:
            found[key] = peak
    return sorted(found.values(), key=lambda q: -q.z)[:max_peaks]


# --------------------------------------------------------------------------- spectrum-only detector


def spectral_features(images, *, window: str | None = "hann", to_corner: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(freq, X)``: log10 radial power spectra of every image, X of shape (N, bins): the
    features of the spectrum-only detector (radial averaging discards orientation and
    phase, so what this detector finds is a difference in *how much* power there is at
    each scale)."""
    freq, s = radial_spectra(images, window=window, to_corner=to_corner)
    return freq, np.log10(np.maximum(s, 1e-30))


def cross_validate_spectrum_detector(real, fake, groups_real=None, groups_fake=None, *, n_splits: int = 5,
                                     C: float = 1.0, window: str | None = "hann", to_corner: bool = True,
                                     seed: int = 0, n_boot: int = 2000, level: float = 0.95,
                                     progress: bool = False) -> "DetectionResult":
    """Spectrum-only real-vs-generated detection, scored exactly like the CNNs.

    Features: `spectral_features` (log radial spectra), standardised on each training
    fold; classifier: L2 logistic regression (sklearn, strength `C`). Folds come from
    `semlab.forensics.detector.grouped_folds` with the same `seed`, so with the same
    inputs they are the very folds of `cross_validate_detector`, and the two
    accuracies can be compared fold for fold. Scores are decision-function logits
    (> 0 = generated); `models[k]` are the fitted sklearn pipelines.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from semlab.forensics.detector import assemble_result, grouped_folds, stack_sets

    images, labels, groups = stack_sets(real, fake, groups_real, groups_fake)
    freq, feats = spectral_features(images, window=window, to_corner=to_corner)
    folds = grouped_folds(labels, groups, n_splits=n_splits, seed=seed)
    scores = np.full(len(labels), np.nan)
    models = []
    it = folds
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(folds, desc=f"spectrum detector {n_splits}-fold CV")
    for tr, te in it:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000))
        clf.fit(feats[tr], labels[tr])
        scores[te] = clf.decision_function(feats[te])
        models.append(clf)
    config = {"detector": "spectrum_logreg", "n_splits": n_splits, "C": C, "window": window,
              "to_corner": to_corner, "seed": seed, "n_boot": n_boot, "freq": freq.tolist(),
              "image_shape": list(images.shape[1:])}
    return assemble_result("spectrum_logreg", labels, groups, scores, folds, models=models, config=config,
                           n_boot=n_boot, level=level, seed=seed)
