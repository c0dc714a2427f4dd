"""Line placement roughness (LPR) of the simulator (`semlab.data.simulate`, v4).

Line-edge roughness moves every edge on its own; real lines also wiggle as a whole, both
edges of a line together, mostly at long wavelengths (in the cdsem-lines frames the two edges
of a line correlate 0.3-0.4 over periods >= 64 px, neighbouring lines do not). Here each
connected structure of the pattern is shifted as a whole along the edge normal by a 1-D
Palasantzas process of std `lpr_sigma_nm` and correlation length `lpr_corr_nm` (exponent
`ler_alpha`), drawn independently per structure: x-shifts along y for edges running along y,
y-shifts along x for the others. As a signed-distance term it is ``-(u gx + v gy)`` with
(gx, gy) the gradient of the unperturbed signed distance, so a left edge and a right edge of
one line move the same way; every pixel takes the shift of its nearest structure.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = ["palasantzas_1d", "placement_field", "placement_terms"]


def palasantzas_1d(rng: np.random.Generator, n: int, length: int, sigma: float, corr: float,
                   alpha: float) -> np.ndarray:
    """`n` independent 1-D Gaussian processes of `length` samples, std `sigma`, with the PSD
    (1 + (2 pi f corr)^2)^-(0.5 + alpha) (drawn on twice the length, so not periodic)."""
    m = 2 * int(length)
    f = np.fft.rfftfreq(m)
    a = (1.0 + (2 * np.pi * f * max(corr, 1e-3)) ** 2) ** (-(0.5 + alpha) / 2)
    a[0] = 0.0
    var = (4.0 * (a[1:-1] ** 2).sum() + a[-1] ** 2) / m ** 2  # of irfft of a * (g1 + i g2)
    z = rng.standard_normal((n, len(f))) + 1j * rng.standard_normal((n, len(f)))
    x = np.fft.irfft(z * a, n=m, axis=1)[:, :length]
    return (x * (sigma / math.sqrt(var))).astype(np.float32)


def placement_field(rng: np.random.Generator, pattern: np.ndarray, gy: np.ndarray, gx: np.ndarray,
                    sigma_px: float, corr_px: float, alpha: float) -> np.ndarray:
    """The signed-distance term (px) that shifts every connected structure of the boolean
    `pattern` as a whole (module doc)."""
    h, w = pattern.shape
    lab, n = ndimage.label(pattern)
    if n == 0 or sigma_px <= 0:
        return np.zeros((h, w), np.float32)
    idx = ndimage.distance_transform_edt(lab == 0, return_distances=False, return_indices=True)
    near = lab[idx[0], idx[1]] - 1
    u = palasantzas_1d(rng, n, h, sigma_px, corr_px, alpha)
    v = palasantzas_1d(rng, n, w, sigma_px, corr_px, alpha)
    out = u[near, np.arange(h)[:, None]] * gx
    out += v[near, np.arange(w)[None, :]] * gy
    out *= -1.0
    return out


def placement_terms(rng: np.random.Generator, pattern: np.ndarray, gy: np.ndarray, gx: np.ndarray,
                    p: dict, px: float) -> np.ndarray:
    """The simulator's whole-structure terms (px): `placement_field` if ``lpr_sigma_nm``, then
    the scan wander if ``wander_nm`` (issue 17): one x-shift per row, shared by every edge of
    the row (beam or stage jitter along the slow scan; in the cdsem-lines frames 0.2-0.4 nm),
    a 1-D Palasantzas process (exponent 0.5, i.e. exponential correlation) of std
    ``wander_nm`` and correlation length ``wander_corr_nm`` (default 100 nm) down the rows.
    Moving the edges, not the noisy image, keeps the noise spectrum unchanged."""
    out = np.zeros(gx.shape, np.float32)
    if p.get("lpr_sigma_nm"):
        out += placement_field(rng, pattern, gy, gx, p["lpr_sigma_nm"] / px, p["lpr_corr_nm"] / px, p["ler_alpha"])
    if p.get("wander_nm"):
        u = palasantzas_1d(rng, 1, gx.shape[0], p["wander_nm"] / px, p.get("wander_corr_nm", 100.0) / px, 0.5)[0]
        out -= u[:, None] * gx
    return out
