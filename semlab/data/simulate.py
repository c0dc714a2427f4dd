"""The embedded SEM simulator: IC layouts -> top-down SEM images with exact ground truth.

In the spirit of NIST's ARTIMAGEN, every imaging effect is a named parameter with a
physical unit (nm, electrons per pixel, or intensity in [0, 1]). One call gives a
noisy SEM image, the canonical label mask, the noise-free image (the best any
generator could predict from the mask), sub-pixel contours of the pattern edges
and the parameters drawn, all from one seed.

How an image is formed (see `EFFECTS` for the parameter names):

1. **Layout** (`semlab.data.layouts`) in px, rasterised as area coverage.
2. **Corner rounding**: the coverage is blurred with a Gaussian of sigma
   `corner_radius_nm / 1.2`; the blurred field B is turned into a signed distance to
   the edge, `phi = s * ndtri(B)` (exact for straight edges, rounded at corners,
   valid within about 5 s of the edge, saturated beyond).
3. **Line-edge roughness**: a Gaussian random field with standard deviation
   `ler_sigma_nm`, correlation length `ler_corr_nm` and roughness exponent
   `ler_alpha` (Palasantzas spectrum) is added to phi, which moves each edge along
   its normal by that amount: the measured edge-position sigma equals `ler_sigma_nm`.
   The mask is `phi > 0`, the contours are the zero level of phi (marching squares).
4. **Sidewall and material contrast**: the height profile is a linear ramp of
   horizontal width `sidewall_nm` across the edge; intensity goes from
   `background_level` to `pattern_level` (holes: `hole_level`).
5. **Edge effect**: a bright rim (`rim_amp`, Gaussian of width `rim_width_nm`
   centred `rim_offset_nm` inside the edge, stronger on one side by
   `scan_asymmetry`) and a dark halo outside (`halo_amp`, exponential decay length
   `halo_width_nm`).
6. **Surface texture** (metal grain): correlated noise of `texture_amp`.
7. **Beam blur**: Gaussian PSF of sigma `psf_sigma_nm`.
8. **Charging**: a linear gradient and a broad bump of amplitude `charging_amp`.
9. **Brightness / contrast**: `contrast * (signal - 0.5) + 0.5 + brightness`.
   This is the noise-free image (`clean`).
10. **Shot noise**: Poisson counts at `dose` electrons per pixel, divided by the dose.
11. **Detector noise**: Gaussian of `detector_sigma`, low-passed along the scan
    direction by `noise_corr_px` (amplifier bandwidth).
12. **Scan-line noise and drift**: per-line offsets (`scanline_sigma`) and per-line
    horizontal shifts (a smoothed random walk of std `drift_px`).
13. Optional **data bar** (`databar`): a burned-in info bar at the bottom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import ndimage, special
import contourpy

from semlab import labels
from semlab.data import layouts as L

# ----------------------------------------------------------------------------------
# presets: each parameter is a constant, a (low, high) uniform range, or for booleans
# a probability in ("p", value).


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    layout: str
    field_of_view_nm: float  # at any image size: pixel size = fov / size
    params: dict[str, Any] = field(default_factory=dict)


_IMAGING = {
    "corner_radius_nm": (4.0, 8.0),
    "ler_sigma_nm": (0.8, 1.8),
    "ler_corr_nm": (8.0, 20.0),
    "ler_alpha": 0.5,
    "sidewall_nm": (1.5, 3.0),
    "background_level": (0.12, 0.22),
    "pattern_level": (0.36, 0.48),
    "hole_level": (0.04, 0.10),
    "defect_level": (0.55, 0.75),
    "rim_amp": (0.22, 0.40),
    "rim_width_nm": (1.8, 3.2),
    "rim_offset_nm": (0.5, 1.5),
    "scan_asymmetry": (0.0, 0.25),
    "halo_amp": (0.04, 0.10),
    "halo_width_nm": (4.0, 9.0),
    "texture_amp": (0.01, 0.03),
    "texture_corr_nm": (2.0, 5.0),
    "psf_sigma_nm": (1.5, 3.0),
    "charging_amp": (0.0, 0.08),
    "brightness": (-0.03, 0.03),
    "contrast": (0.9, 1.1),
    "dose": (80.0, 400.0),  # e-/px; calibrated on the DSA images (noise sigma, HF power)
    "detector_sigma": (0.01, 0.03),
    "noise_corr_px": (0.4, 0.9),
    "scanline_sigma": (0.004, 0.015),
    "drift_px": (0.0, 0.35),
    "databar": False,
    "defect_prob": 0.12,
    "defect_radius_nm": [3.0, 8.0],  # a list is a constant (drawn per particle)
}

PRESETS: dict[str, Preset] = {
    "ic-metal": Preset(
        "ic-metal",
        "top-down SEM of a routed metal layer: gray metal plateaus, dark trenches, bright edge rims",
        "manhattan", 512.0,
        {**_IMAGING, "pitch_nm": (48.0, 80.0), "width_frac": (0.4, 0.6), "fill": (0.55, 0.85),
         "bend_prob": 0.35, "horizontal": ("p", 0.6)},
    ),
    "line-space": Preset(
        "line-space",
        "line/space grating (resist or metal lines) with LER, occasional tip-to-tip line-ends",
        "line_space", 384.0,
        {**_IMAGING, "pitch_nm": (28.0, 56.0), "width_frac": (0.35, 0.6), "vertical": ("p", 0.8),
         "line_end_prob": 0.08, "tip_gap_nm": (10.0, 25.0), "defect_prob": 0.05,
         "pattern_level": (0.45, 0.6), "halo_amp": (0.02, 0.06)},
    ),
    "contacts": Preset(
        "contacts",
        "contact-hole array etched into a film: dark holes with bright rims",
        "contacts", 512.0,
        {**_IMAGING, "pitch_nm": (40.0, 80.0), "width_frac": (0.4, 0.6), "stagger": ("p", 0.3),
         "hole_jitter": (0.0, 0.06), "missing_prob": 0.03, "defect_prob": 0.05},
    ),
    "comb": Preset(
        "comb",
        "interdigitated comb test structure with tip-to-spine gaps",
        "comb", 512.0,
        {**_IMAGING, "pitch_nm": (40.0, 80.0), "width_frac": (0.4, 0.6), "tip_gap_nm": (10.0, 30.0),
         "vertical": ("p", 0.5)},
    ),
}

# The imaging effects in the order they act, with the parameter values that switch
# each off. `effect_ladder` switches them on one after another.
EFFECTS: dict[str, tuple[str, dict[str, Any]]] = {
    "corner_rounding": ("corners rounded by the process (Gaussian of sigma r/1.2)", {"corner_radius_nm": 0.0}),
    "line_edge_roughness": ("correlated random edge displacement (sigma, correlation length)", {"ler_sigma_nm": 0.0}),
    "sidewall": ("sloped sidewall: a ramp between trench and plateau levels", {"sidewall_nm": 0.0}),
    "edge_effect": ("bright rims at edges, dark halos beside them", {"rim_amp": 0.0, "halo_amp": 0.0}),
    "texture": ("surface grain on the pattern", {"texture_amp": 0.0}),
    "beam_blur": ("Gaussian probe / point-spread function", {"psf_sigma_nm": 0.0}),
    "charging": ("low-frequency charging gradient", {"charging_amp": 0.0}),
    "brightness_contrast": ("detector gain and offset", {"brightness": 0.0, "contrast": 1.0}),
    "shot_noise": ("Poisson noise of the detected electrons at the dose", {"dose": math.inf}),
    "detector_noise": ("Gaussian amplifier noise, correlated along the scan", {"detector_sigma": 0.0}),
    "scan_noise": ("per-line offsets and horizontal drift of scan lines", {"scanline_sigma": 0.0, "drift_px": 0.0}),
}


@dataclass
class SimResult:
    image: np.ndarray      # float32 (H, W) in [0, 1]: the noisy SEM image
    mask: np.ndarray       # uint8 (H, W): canonical labels
    clean: np.ndarray      # float32 (H, W): noise-free image
    contours: list[np.ndarray]  # (N, 2) float (row, col) closed polygons of pattern edges
    params: dict[str, Any]


def _draw(rng: np.random.Generator, spec: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k in sorted(spec):  # fixed order: the same seed draws the same values
        v = spec[k]
        if isinstance(v, tuple) and len(v) == 2 and v[0] == "p":
            out[k] = bool(rng.random() < v[1])
        elif isinstance(v, tuple) and len(v) == 2:
            out[k] = float(rng.uniform(v[0], v[1]))
        else:
            rng.random()  # keep the stream aligned whatever the preset fixes
            out[k] = v
    return out


def _rng(seed) -> np.random.Generator:
    if isinstance(seed, (tuple, list)):
        return np.random.default_rng(np.random.SeedSequence([int(s) for s in seed]))
    return np.random.default_rng(np.random.SeedSequence(int(seed)))


@lru_cache(maxsize=32)
def _palasantzas_filter(h: int, w: int, corr_px: float, alpha: float) -> np.ndarray:
    """sqrt of a 2-D Palasantzas PSD on the rfft grid, normalised to unit field variance."""
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.rfftfreq(w)[None, :]
    k2 = (2 * np.pi) ** 2 * (ky * ky + kx * kx)
    psd = (1.0 + k2 * corr_px ** 2) ** (-(1.0 + alpha))
    psd[0, 0] = 0.0
    # variance of irfft2(F * filt) with white F: Parseval over the full spectrum
    weight = np.full(psd.shape, 2.0)
    weight[:, 0] = 1.0
    if w % 2 == 0:
        weight[:, -1] = 1.0
    var = (weight * psd).sum() / (h * w)
    return np.sqrt(psd / var).astype(np.float32)


def correlated_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float,
                     corr_px: float, alpha: float = 0.5) -> np.ndarray:
    """A stationary Gaussian random field with std `sigma` and Palasantzas correlation."""
    h, w = shape
    if sigma == 0:
        return np.zeros(shape, np.float32)
    white = rng.standard_normal((h, w), dtype=np.float32)
    f = np.fft.rfft2(white) * _palasantzas_filter(h, w, float(max(corr_px, 1e-3)), float(alpha))
    return np.fft.irfft2(f, s=(h, w)) * np.float32(sigma)


@lru_cache(maxsize=32)
def _palasantzas_1d(n: int, corr_px: float, alpha: float) -> np.ndarray:
    """sqrt of a 1-D Palasantzas PSD on the rfft grid, normalised to unit variance."""
    k = 2 * np.pi * np.fft.rfftfreq(n)
    psd = (1.0 + (k * corr_px) ** 2) ** (-(0.5 + alpha))
    psd[0] = 0.0
    weight = np.full(psd.shape, 2.0)
    weight[0] = 1.0
    if n % 2 == 0:
        weight[-1] = 1.0
    return np.sqrt(psd / ((weight * psd).sum() / n)).astype(np.float32)


@lru_cache(maxsize=32)
def _gauss_var_factor(s: float) -> float:
    delta = np.zeros(int(8 * s) + 9)
    delta[len(delta) // 2] = 1.0
    return float((ndimage.gaussian_filter1d(delta, s, truncate=3.0) ** 2).sum())


def edge_roughness(rng: np.random.Generator, shape: tuple[int, int], sigma: float, corr_px: float,
                   alpha: float, across_px: float, axis: int) -> np.ndarray:
    """Edge displacement for edges running along `axis`: a 1-D Palasantzas process along
    the edge (std `sigma`, correlation length `corr_px`, roughness exponent `alpha`),
    varying smoothly across it (Gaussian of `across_px`), so each edge stays a single-valued
    curve and edges farther apart than ~2 `across_px` are independent."""
    h, w = shape
    n = shape[axis]
    white = rng.standard_normal((h, w), dtype=np.float32)
    filt = _palasantzas_1d(n, float(max(corr_px, 1e-3)), float(alpha))
    filt = filt[:, None] if axis == 0 else filt[None, :]
    f = np.fft.irfft(np.fft.rfft(white, axis=axis) * filt, n=n, axis=axis)
    s = max(across_px, 0.5)
    f = ndimage.gaussian_filter1d(f, s, axis=1 - axis, truncate=3.0, mode="wrap")
    return (f * (sigma / math.sqrt(_gauss_var_factor(s)))).astype(np.float32)


_EPS = 1e-6
_NDTRI_MAX = float(-special.ndtri(_EPS))  # ~4.75


def _signed_distance(cov: np.ndarray, sigma_px: float) -> np.ndarray:
    """Coverage -> approximate signed distance (px) via the blurred-edge inverse CDF.

    The coverage of a straight edge blurred by a Gaussian of sigma s is Phi(d / s_eff)
    with s_eff^2 = s^2 + 1/12 (the pixel box), so d = s_eff * ndtri(B).
    """
    s = max(sigma_px, 0.6)
    b = ndimage.gaussian_filter(cov, s, mode="nearest", truncate=3.5)
    np.clip(b, _EPS, 1 - _EPS, out=b)
    return (math.sqrt(s * s + 1 / 12) * special.ndtri(b)).astype(np.float32)


def _ramp(d: np.ndarray, width_px: float) -> np.ndarray:
    if width_px <= 1e-3:
        return (d > 0).astype(np.float32)
    return np.clip(0.5 + d / width_px, 0.0, 1.0)


def _layout(rng, preset: Preset, p: dict, h: int, w: int, px: float) -> L.Layout:
    pitch = p["pitch_nm"] / px
    width = pitch * p["width_frac"]
    if preset.layout == "manhattan":
        lay = L.manhattan(rng, h, w, pitch=pitch, width=width, fill=p["fill"],
                          bend_prob=p["bend_prob"], horizontal=p["horizontal"])
    elif preset.layout == "line_space":
        lay = L.line_space(rng, h, w, pitch=pitch, cd=width, vertical=p["vertical"],
                           tip_gap=p["tip_gap_nm"] / px, line_end_prob=p["line_end_prob"])
    elif preset.layout == "contacts":
        lay = L.contacts(rng, h, w, pitch=pitch, diameter=width, jitter=p["hole_jitter"],
                         missing_prob=p["missing_prob"], stagger=p["stagger"])
    elif preset.layout == "comb":
        lay = L.comb(rng, h, w, pitch=pitch, width=width, tip_gap=p["tip_gap_nm"] / px,
                     vertical=p["vertical"])
    else:  # pragma: no cover - presets are fixed above
        raise KeyError(preset.layout)
    lo, hi = p["defect_radius_nm"]
    L.add_defects(rng, lay, prob=p["defect_prob"], radius=(lo / px, hi / px))
    return lay


def _ler_field(rng, gy: np.ndarray, gx: np.ndarray, p: dict, px: float) -> np.ndarray:
    """LER displacement: roughness along vertical and horizontal edges, blended by the
    local edge orientation (gy, gx: gradient of the unperturbed signed distance)."""
    sigma = p["ler_sigma_nm"] / px
    if sigma <= 0:
        return np.zeros(gx.shape, np.float32)
    corr = p["ler_corr_nm"] / px
    across = max(0.5 * corr, 3.0 * sigma)
    f_v = edge_roughness(rng, gx.shape, sigma, corr, p["ler_alpha"], across, axis=0)
    f_h = edge_roughness(rng, gx.shape, sigma, corr, p["ler_alpha"], across, axis=1)
    wv = gx * gx / (gx * gx + gy * gy + 1e-12)
    return f_h + wv * (f_v - f_h)


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}") from None


def simulate(preset: str = "ic-metal", size: int | tuple[int, int] = 256, seed=0, *,
             disable: tuple[str, ...] | list[str] = (), pixel_nm: float | None = None,
             with_contours: bool = True, **overrides) -> SimResult:
    """Simulate one SEM image with its label mask, noise-free image and contours.

    `size` is px (square) or (height, width); the pixel size defaults to the preset's
    field of view divided by the size (the same structures at any resolution).
    `disable` switches effects of `EFFECTS` off; `overrides` set parameters.
    """
    pre = get_preset(preset)
    h, w = (size, size) if isinstance(size, int) else size
    unknown = set(overrides) - set(pre.params)
    if unknown:
        raise KeyError(f"unknown simulator parameter(s) {sorted(unknown)}; valid: {sorted(pre.params)}")
    bad = set(disable) - set(EFFECTS)
    if bad:
        raise KeyError(f"unknown effect(s) {sorted(bad)}; valid: {list(EFFECTS)}")
    rng = _rng(seed)
    p = _draw(rng, pre.params)
    for eff in disable:
        p.update(EFFECTS[eff][1])
    p.update(overrides)
    px = float(pixel_nm) if pixel_nm else pre.field_of_view_nm / max(h, w)
    lay = _layout(rng, pre, p, h, w, px)

    # 2-3: signed distance with corner rounding and LER
    s_round = p["corner_radius_nm"] / 1.2 / px
    phi_p = _signed_distance(L.rasterize_rects(lay.rects, h, w), s_round)
    phi_h = phi_d = None
    if lay.holes:
        phi_h = _signed_distance(L.rasterize_discs(lay.holes, h, w), s_round)
    gy, gx = np.gradient(phi_p if phi_h is None else np.minimum(phi_p, -phi_h))
    ler = _ler_field(rng, gy, gx, p, px)
    phi_p += ler
    d = phi_p
    if phi_h is not None:
        phi_h -= ler
        d = np.minimum(phi_p, -phi_h)
    if lay.defects:
        phi_d = _signed_distance(L.rasterize_discs(lay.defects, h, w), 0.6)

    mask = np.zeros((h, w), np.uint8)
    mask[phi_p > 0] = labels.PATTERN
    if phi_h is not None:
        mask[(phi_h > 0) & (phi_p > 0)] = labels.HOLE
    if phi_d is not None:
        mask[phi_d > 0] = labels.DEFECT

    # 4-6: material contrast, sidewall, edge effect, texture
    sw = p["sidewall_nm"] / px
    bg, pat = p["background_level"], p["pattern_level"]
    sig = bg + (pat - bg) * _ramp(phi_p, sw)
    if phi_h is not None:
        hh = _ramp(phi_h, sw) * (phi_p > -sw)
        sig = sig * (1 - hh) + p["hole_level"] * hh
    if p["rim_amp"] > 0:
        rw = max(p["rim_width_nm"] / px, 0.3)
        z = (d - p["rim_offset_nm"] / px) / rw
        rim = p["rim_amp"] * np.exp(-0.5 * z * z)
        if p["scan_asymmetry"] > 0:  # edges facing the scan direction are brighter
            rim *= 1 + p["scan_asymmetry"] * np.clip(gx, -1, 1)
        sig += rim
    if p["halo_amp"] > 0:
        sig += p["halo_amp"] * np.where(d < 0, -np.exp(np.minimum(d, 0) / max(p["halo_width_nm"] / px, 0.3)), 0.0)
    if p["texture_amp"] > 0:
        tex = correlated_field(rng, (h, w), p["texture_amp"], max(p["texture_corr_nm"] / px, 0.5), 1.0)
        sig += tex * (phi_p > 0)
    if phi_d is not None:
        dd = _ramp(phi_d, max(sw, 1.0))
        sig = sig * (1 - dd) + p["defect_level"] * dd
        if p["rim_amp"] > 0:
            sig += 0.5 * p["rim_amp"] * np.exp(-0.5 * (phi_d / 1.5) ** 2)

    # 7-9: PSF, charging, gain
    if p["psf_sigma_nm"] > 0:
        sig = ndimage.gaussian_filter(sig, p["psf_sigma_nm"] / px, mode="reflect", truncate=3.5)
    if p["charging_amp"] > 0:
        ang = rng.uniform(0, 2 * np.pi)
        yy = (np.arange(h, dtype=np.float32)[:, None] / h - 0.5)
        xx = (np.arange(w, dtype=np.float32)[None, :] / w - 0.5)
        cy, cx = rng.uniform(-0.5, 0.5, 2)
        bump = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.18)
        sig = sig + p["charging_amp"] * (np.cos(ang) * yy + np.sin(ang) * xx + 0.5 * bump)
    clean = np.clip(p["contrast"] * (sig - 0.5) + 0.5 + p["brightness"], 0.0, 1.0).astype(np.float32)

    # 10-12: noise
    img = clean.astype(np.float64)
    if math.isfinite(p["dose"]):
        img = rng.poisson(img * p["dose"]) / p["dose"]
    if p["detector_sigma"] > 0:
        n = rng.standard_normal((h, w))
        if p["noise_corr_px"] > 0:
            n = ndimage.gaussian_filter1d(n, p["noise_corr_px"], axis=1)
            n /= max(float(n.std()), 1e-8)
        img = img + p["detector_sigma"] * n
    if p["scanline_sigma"] > 0:
        img = img + p["scanline_sigma"] * rng.standard_normal((h, 1))
    if p["drift_px"] > 0:
        walk = ndimage.gaussian_filter1d(np.cumsum(rng.standard_normal(h)), 3.0)
        walk -= walk.mean()
        walk *= p["drift_px"] / max(float(walk.std()), 1e-8)
        img = _shift_rows(img, walk)
    if p["databar"]:
        bar = _databar(rng, h, w)
        img[-bar.shape[0]:] = bar
        clean[-bar.shape[0]:] = bar
        mask[-bar.shape[0]:] = labels.BACKGROUND
        p["databar_row"] = h - bar.shape[0]
    image = np.clip(img, 0.0, 1.0).astype(np.float32)

    contours = structure_contours(d) if with_contours else []
    p.update({"preset": preset, "pixel_nm": px, "height": h, "width": w,
              "seed": list(seed) if isinstance(seed, (tuple, list)) else int(seed),
              "n_rects": len(lay.rects), "n_holes": len(lay.holes), "n_defects": len(lay.defects),
              "disabled": list(disable)})
    p = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in p.items()}
    return SimResult(image, mask, clean, contours, p)


def structure_contours(d: np.ndarray) -> list[np.ndarray]:
    """Closed sub-pixel contours (row, col) of the zero level of a signed distance.

    Marching squares (contourpy) on the field padded by one pixel with the negated
    edge values, so structures cut by the frame close along its outer pixel boundary.
    """
    pad = np.pad(d.astype(np.float64), 1, mode="edge")
    pad[0, :], pad[-1, :] = -np.abs(pad[0, :]), -np.abs(pad[-1, :])
    pad[:, 0], pad[:, -1] = -np.abs(pad[:, 0]), -np.abs(pad[:, -1])
    lines = contourpy.contour_generator(z=pad, line_type="Separate").lines(0.0)
    # contourpy gives (x, y) = (col, row); shift back by the padding
    return [(c[:, ::-1] - 1.0).astype(np.float32) for c in lines if len(c) >= 4]


def _shift_rows(img: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Shift each row right by a sub-pixel amount (linear interpolation, edge clamp)."""
    h, w = img.shape
    k = np.floor(shifts).astype(np.int64)
    f = (shifts - k)[:, None]
    pad = int(np.abs(k).max()) + 2
    p = np.pad(img, ((0, 0), (pad, pad)), mode="edge")
    out = np.empty_like(img)
    for kk in np.unique(k):  # a handful of integer shifts: slice instead of gather
        rows = k == kk
        a = p[rows, pad - kk:pad - kk + w]          # img(x - k)
        b = p[rows, pad - kk - 1:pad - kk - 1 + w]  # img(x - k - 1)
        out[rows] = a * (1 - f[rows]) + b * f[rows]
    return out


def _databar(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A burned-in info bar: black band with white blocky 'text' and a scale bar."""
    bh = max(int(round(0.06 * h)), 4)
    bar = np.zeros((bh, w), np.float32)
    t = max(bh // 3, 1)
    x = max(w // 40, 1)
    while x < 0.45 * w:
        cw = int(rng.integers(1, 3)) * t
        bar[t:2 * t + 1, x:x + cw] = 1.0 if rng.random() < 0.7 else 0.0
        x += cw + t
    bar[bh // 2, int(0.55 * w):int(0.8 * w)] = 1.0
    return bar


def effect_ladder(preset: str = "ic-metal", size: int = 256, seed=0) -> list[tuple[str, str, np.ndarray]]:
    """The same layout with the imaging effects switched on one after another."""
    names = list(EFFECTS)
    out = [("layout", "the bare layout: trench and plateau levels only",
            simulate(preset, size, seed, disable=names, with_contours=False).image)]
    for i, name in enumerate(names):
        r = simulate(preset, size, seed, disable=names[i + 1:], with_contours=False)
        out.append((name, EFFECTS[name][0], r.image))
    return out
