"""The `semlab.noise` core: how much noise is in an SEM frame?

Two estimators of the per-pixel standard deviation of the (temporal) noise, in the
image's own units (gray levels in [0, 1] for semlab images; x 255 for 8-bit gray levels):

* **Repeated scans** (`frame_difference_sigma`): frames of one field of view are
  registered to the first by phase correlation (`skimage.registration.
  phase_cross_correlation`, integer shifts), and the difference of each registered pair,
  over their overlap and with its median removed, has the standard deviation
  ``sqrt(2) sigma`` when the noise is independent between scans: sigma = std / sqrt(2).
  The structure cancels, whatever the noise's spatial correlation. This is the reference.
* **One frame** (`noise_sigma`): the noise power spectrum is estimated from the frame's
  own 2-D power spectrum and integrated. The frame is cut into overlapping Hann-windowed
  segments (Welch), whose mean periodogram P(f) is the noise spectrum S(f) plus the
  structure's. SEM structure (edges, lines, lattices) concentrates its power on a few
  lines and peaks of the frequency plane (and near zero frequency), while the noise
  spectrum is smooth, so a running median of P over a window of frequencies follows S and
  rejects the structure; the bins nearest to zero frequency, where structure dominates
  over the whole window, take the median of the ring just outside them. By Parseval,
  ``sigma**2 = mean over all frequencies of S(f)``. Unlike a high-pass estimator, this
  counts correlated noise fully: JPEG compression, the detector's bandwidth or a blur of
  the noise move noise power to low frequencies, where a high-pass filter (Immerkaer's
  Laplacian difference, `immerkaer_sigma`) no longer sees it and reads low (about half
  the repeated-scan value on the litho stack packaged with semlab).

What no single-frame estimator can do: tell static texture (grain on the pattern, fixed
from scan to scan) from temporal noise; repeated scans can.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import ndimage

from semlab.arrays import as_gray_stack

__all__ = ["immerkaer_sigma", "noise_sigma", "noise_spectrum", "register_integer", "FrameDifferenceNoise",
           "frame_difference_sigma"]

QUANTILE = 0.5  # the running quantile (the median) of the periodogram that tracks the noise spectrum

# Immerkaer's (1996) kernel: the difference of two Laplacians; removes locally linear structure.
_IMMERKAER = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
_IMMERKAER_NORM = float(np.sqrt((_IMMERKAER ** 2).sum()))  # = 6


def _gray(img, min_size: int = 3) -> np.ndarray:
    x = np.asarray(img)
    if x.ndim != 2 or min(x.shape) < min_size:
        raise ValueError(f"expected a 2-D image of at least {min_size}x{min_size}, got shape {x.shape}")
    return as_gray_stack(x, what="image", dtype=np.float64, value_range=None, min_size=min_size)[0]


def immerkaer_sigma(img) -> float:
    """The white-noise estimator: MAD of Immerkaer's 3x3 response (valid pixels) x 1.4826 / 6.
    Exact for white Gaussian noise; reads low for spatially correlated noise."""
    x = _gray(img)
    resp = ndimage.correlate(x, _IMMERKAER, mode="reflect")[1:-1, 1:-1]
    mad = np.median(np.abs(resp - np.median(resp)))
    return float(1.4826 * mad / _IMMERKAER_NORM)


def _segment_size(h: int, w: int, segment: int | None) -> int:
    if segment is not None:
        if segment < 8 or segment > min(h, w):
            raise ValueError(f"segment must be between 8 and the image's shorter side {min(h, w)}, got {segment}")
        return int(segment)
    m = 1 << int(np.floor(np.log2(max(min(h, w) / 2, 1))))
    return int(np.clip(m, 8, 64))


def noise_spectrum(img, *, segment: int | None = None, median_bins: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``(P, S)``: the Welch mean periodogram of the frame and the noise spectrum estimated
    from it (unshifted, `segment` x `segment` bins; normalised so that white noise of
    variance s**2 gives s**2 in every bin). `segment`: side of the Hann-windowed segments
    (step half a segment; default the largest power of two up to half the shorter side,
    8-64 px); `median_bins`: side of the running-median window (default segment/8 + 1,
    at least 3, odd)."""
    x = _gray(img, min_size=8)
    h, w = x.shape
    m = _segment_size(h, w, segment)
    k = median_bins or max(3, m // 8 + 1)
    k += 1 - k % 2
    # the periodic Hann window: its DFT has exactly three non-zero bins, so structure that
    # is constant along one axis stays on three rows (or columns) of the spectrum
    w1 = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(m) / m)
    win = np.outer(w1, w1)
    norm = (win ** 2).sum()
    step = max(1, m // 2)
    rows = list(range(0, h - m + 1, step))
    cols = list(range(0, w - m + 1, step))
    acc = np.zeros((m, m))
    n = 0
    for r in rows:
        seg = np.stack([x[r:r + m, c:c + m] for c in cols])
        seg = (seg - seg.mean(axis=(1, 2), keepdims=True)) * win
        acc += (np.abs(np.fft.fft2(seg)) ** 2).sum(axis=0) / norm
        n += len(cols)
    p = acc / n
    # a running median (robust to structure in up to half of the window), made consistent
    # for the periodogram's Gamma distribution: the mean of n Hann segments at half overlap
    # behaves as a Gamma of shape n / 1.06 (Welch's variance factor)
    from scipy.stats import gamma

    shape = max(n / 1.06, 1.0)
    s = ndimage.percentile_filter(p, QUANTILE * 100, size=k, mode="wrap") / (gamma.ppf(QUANTILE, shape) / shape)
    # Around zero frequency the structure fills most of every median window (the two axes
    # cross there). Noise spectra are smooth and flat-topped at zero frequency, so the core
    # takes log S = a + b fy^2 + c fx^2 (b, c <= 0) fitted on the ring just outside it,
    # bounded above by the periodogram itself (noise power cannot exceed the total).
    fy = np.fft.fftfreq(m)[:, None] * m
    fx = np.fft.fftfreq(m)[None, :] * m
    cheb = np.maximum(np.abs(fy), np.abs(fx))
    core = cheb <= k // 2
    ring = (cheb > k // 2) & (cheb <= k // 2 + 3)
    yy, xx = np.broadcast_to(fy ** 2, s.shape), np.broadcast_to(fx ** 2, s.shape)
    ls = np.log(np.maximum(s[ring], 1e-300))
    A = np.stack([np.ones(ls.size), yy[ring], xx[ring]], axis=1)
    coef = np.linalg.lstsq(A, ls, rcond=None)[0]
    coef[1:] = np.minimum(coef[1:], 0.0)
    coef[0] = float(np.mean(ls - A[:, 1:] @ coef[1:]))
    fit = np.exp(coef[0] + coef[1] * yy[core] + coef[2] * xx[core])
    cap = p[core].copy()
    cap[np.flatnonzero(((fy == 0) & (fx == 0))[core])] = np.inf  # the mean was removed there: no bound
    s[core] = np.minimum(fit, cap)
    return p, s


def noise_sigma(img, *, segment: int | None = None, median_bins: int | None = None) -> float:
    """Single-frame noise sigma: the square root of the mean of `noise_spectrum`'s noise
    spectrum over all frequencies (see the module doc). Images smaller than 16 px a side
    fall back to `immerkaer_sigma`."""
    x = _gray(img)
    if min(x.shape) < 16:
        return immerkaer_sigma(x)
    _, s = noise_spectrum(x, segment=segment, median_bins=median_bins)
    return float(np.sqrt(max(float(s.mean()), 0.0)))


# --------------------------------------------------------------------------- repeated scans


def register_integer(ref: np.ndarray, img: np.ndarray) -> tuple[int, int]:
    """The integer (dy, dx) that moves `img` onto `ref` (phase correlation):
    ``ref[y, x] ~ img[y - dy, x - dx]``."""
    from skimage.registration import phase_cross_correlation

    shift, _, _ = phase_cross_correlation(np.asarray(ref, np.float64), np.asarray(img, np.float64),
                                          upsample_factor=1, normalization=None)
    return int(round(shift[0])), int(round(shift[1]))


def _overlap(a: np.ndarray, b: np.ndarray, dy: int, dx: int) -> tuple[np.ndarray, np.ndarray]:
    """The overlapping parts of `a` and `b` shifted by (dy, dx) (`a[y, x]` ~ `b[y - dy, x - dx]`)."""
    h, w = a.shape
    ya, yb = (dy, 0) if dy >= 0 else (0, -dy)
    xa, xb = (dx, 0) if dx >= 0 else (0, -dx)
    hh, ww = h - abs(dy), w - abs(dx)
    return a[ya:ya + hh, xa:xa + ww], b[yb:yb + hh, xb:xb + ww]


@dataclass
class FrameDifferenceNoise:
    """Repeated-scan noise: `sigma` (median over pairs of std(difference) / sqrt(2)),
    `sigma_robust` (the same from 1.4826 x MAD), per pair `pairs` [(i, j)], `shifts`
    [(dy, dx) of frame j onto frame i], `pair_sigma`; `single_frame` (`noise_sigma` of
    every frame) and `immerkaer` (`immerkaer_sigma` of every frame) for comparison."""

    sigma: float
    sigma_robust: float
    pairs: list[tuple[int, int]]
    shifts: list[tuple[int, int]]
    pair_sigma: list[float]
    single_frame: list[float] = field(default_factory=list)
    immerkaer: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def frame_difference_sigma(frames: Sequence, *, max_shift: int | None = None, border: int = 4
                           ) -> FrameDifferenceNoise:
    """Per-frame noise sigma from repeated scans of one field of view (see the module doc).

    `frames`: images (arrays of one shape) or image files (read with `semlab.io.read_image`,
    data bars cropped with `semlab.data.sources.crop_databar`). Every frame is registered
    to the first (integer shifts); each consecutive pair's registered difference, less its
    median and `border` px at the edges of the overlap, gives std / sqrt(2) (each pair is
    registered on its own). `max_shift`:
    refuse shifts larger than this (px), a sign that the frames are not one field of view.
    """
    imgs = []
    for f in frames:
        if isinstance(f, np.ndarray):
            imgs.append(_gray(f, min_size=16))
            continue
        from semlab import io
        from semlab.data.sources import crop_databar

        imgs.append(_gray(crop_databar(io.read_image(f), "auto")[0], min_size=16))
    if len(imgs) < 2:
        raise ValueError(f"frame_difference_sigma needs at least 2 frames of one field of view, got {len(imgs)}")
    shape = imgs[0].shape
    bad = [i for i, im in enumerate(imgs) if im.shape != shape]
    if bad:
        raise ValueError(f"frames {bad} are {imgs[bad[0]].shape}, not {shape} like frame 0: not repeated scans")
    pair_shift = [register_integer(imgs[i], imgs[i + 1]) for i in range(len(imgs) - 1)]
    if max_shift is not None:
        far = [(i, i + 1, s) for i, s in enumerate(pair_shift) if max(abs(s[0]), abs(s[1])) > max_shift]
        if far:
            raise ValueError(f"frames shifted by more than {max_shift} px: {far}: not one field of view")
    pairs, shifts, sig, rob = [], [], [], []
    for i in range(len(imgs) - 1):
        j = i + 1
        dy, dx = pair_shift[i]
        a, b = _overlap(imgs[i], imgs[j], dy, dx)
        d = a - b
        if border and min(d.shape) > 4 * border:
            d = d[border:-border, border:-border]
        d = d - np.median(d)
        pairs.append((i, j))
        shifts.append((dy, dx))
        sig.append(float(d.std() / np.sqrt(2)))
        rob.append(float(1.4826 * np.median(np.abs(d)) / np.sqrt(2)))
    return FrameDifferenceNoise(float(np.median(sig)), float(np.median(rob)), pairs, shifts, sig,
                                [noise_sigma(im) for im in imgs], [immerkaer_sigma(im) for im in imgs])
