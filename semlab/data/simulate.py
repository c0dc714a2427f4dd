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
3. **Line-edge roughness** (and, optional, line placement roughness `lpr_sigma_nm`,
   `lpr_corr_nm`: each structure shifted as a whole, `semlab.data.placement`): a Gaussian
   random field with standard deviation
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
10. **Shot noise**: Poisson counts at `dose` electrons per pixel, divided by the dose
    (see `shot_noise` for the exact and the default fast sampler).
11. **Detector noise**: Gaussian of `detector_sigma`, low-passed along the scan
    direction by `noise_corr_px` (amplifier bandwidth); `scan_corr_px` (optional) low-passes
    all the noise, shot and detector, along the scan, keeping its variance.
12. **Scan-line noise and drift**: per-line offsets (`scanline_sigma`) and per-line
    horizontal shifts (a smoothed random walk of std `drift_px`).
13. Optional **data bar** (`databar`): a burned-in info bar at the bottom; optional
    `bit_depth` (e.g. 8): the image quantised to the gray levels of that many bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import fft as sfft
from scipy import ndimage, special
import contourpy

from semlab import labels
from semlab.data import layouts as L
from semlab.data import looks, particles as P

# Bumped whenever the same seed and parameters give different images; simulated
# datasets record it in their identity, so a stale folder is never mixed with new items.
SIMULATOR_VERSION = 4  # 3: presets re-tuned to real frames and MIIC statistics (issue 17); 4: line-space:
# edges roughen independently (ler_across_nm), LER without the scan wander, re-fitted (issue 17)

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

# The presets as they were up to simulator version 2 (issue 17 re-tuned them): kept under
# their own names, the power control of `semlab realism` (a preset known to be separable).
_IC_METAL_V2 = {**_IMAGING, "pitch_nm": (48.0, 80.0), "width_frac": (0.4, 0.6), "fill": (0.55, 0.85),
                "bend_prob": 0.35, "horizontal": ("p", 0.6)}
_LINE_SPACE_V2 = {**_IMAGING, "pitch_nm": (28.0, 56.0), "width_frac": (0.35, 0.6), "vertical": ("p", 0.8),
                  "line_end_prob": 0.08, "tip_gap_nm": (10.0, 25.0), "defect_prob": 0.05,
                  "pattern_level": (0.45, 0.6), "halo_amp": (0.02, 0.06)}
_CONTACTS_V2 = {**_IMAGING, "pitch_nm": (40.0, 80.0), "width_frac": (0.4, 0.6), "stagger": ("p", 0.3),
                "hole_jitter": (0.0, 0.06), "missing_prob": 0.03, "defect_prob": 0.05}

# ic-metal (simulator v3): the look of a denoised metal-layer SEM (the MIIC kind), fitted to
# three third-party statistics of 512-px frames (tests/test_presets.py, tools/measure_presets.py):
# noise sigma ~0.0024 (`noise_sigma_estimate`), rim +16% and halo -19% of the plateau-to-trench
# step (`semlab.metrology.edge_overshoot`), pitch ~51 px (`semlab.metrology.fft_pitch`). Metal
# plateaus cover ~75% of the field, trenches (and tip-to-tip gaps) are ~0.25 pitch wide.
_IC_METAL = {**_IMAGING, "pitch_nm": (46.0, 56.0), "width_frac": (0.72, 0.8), "fill": (0.85, 0.95),
             "min_gap_frac": 0.3, "bend_prob": 0.3, "horizontal": ("p", 0.6), "corner_radius_nm": (3.0, 5.0),
             "ler_sigma_nm": (0.4, 0.8), "sidewall_nm": (0.8, 1.5), "background_level": (0.14, 0.16),
             "pattern_level": (0.44, 0.46), "rim_amp": (0.11, 0.13), "rim_width_nm": (0.8, 1.2),
             "rim_offset_nm": (0.6, 1.0), "scan_asymmetry": (0.0, 0.1), "halo_amp": (0.17, 0.21),
             "halo_width_nm": (1.5, 2.5), "texture_amp": (0.002, 0.004), "psf_sigma_nm": (0.8, 1.2),
             "charging_amp": (0.0, 0.02), "brightness": (-0.02, 0.02), "contrast": (0.95, 1.05),
             "dose": (6.0e4, 9.0e4), "detector_sigma": 0.001, "scanline_sigma": (0.0002, 0.0005), "drift_px": 0.0}

# line-space (v3): fitted to the train and val frames of cdsem-lines (Hitachi, 0.827 nm/px; Test03,
# Test01, never the test frame Test02): per-tile features of `semlab realism` matched by a
# Nelder-Mead search, one frame at a time; the ranges span both fits. fov: real pixel at 256 px.
# v4: roughness from `semlab fit-sim` v4 of each frame: edge roughness with the scan wander (the
# row displacement shared by all edges) removed, edges roughening independently (v3: neighbouring
# edges correlated -0.5), line placement roughness (both edges of a line correlate 0.3-0.4 at
# periods >= 64 px), corner radius a fifth of the CD (8 nm blurred 13-nm lines: LER read 1.6x).
_LINE_SPACE = {**_IMAGING, "pitch_nm": (25.0, 25.5), "width_frac": (0.51, 0.54), "vertical": True,
               "line_end_prob": 0.02, "tip_gap_nm": (10.0, 25.0), "defect_prob": 0.03,
               "corner_radius_nm": (2.6, 2.7), "ler_sigma_nm": (0.64, 0.88), "ler_corr_nm": (7.9, 11.0),
               "ler_across_nm": (3.0, 3.4), "lpr_sigma_nm": (0.22, 0.25), "lpr_corr_nm": (22.7, 27.1), "sidewall_nm": (1.3, 1.5),
               "psf_sigma_nm": (1.45, 1.6), "background_level": (0.135, 0.142), "pattern_level": (0.27, 0.335),
               "rim_amp": 0.025, "rim_width_nm": 2.56, "scan_asymmetry": 0.58, "halo_amp": 0.01,
               "halo_width_nm": 5.0, "texture_amp": 0.0, "charging_amp": 0.0, "brightness": 0.0, "contrast": 1.0,
               "dose": (245.0, 385.0), "detector_sigma": 0.0, "scan_corr_px": (0.0, 0.56),
               "scanline_sigma": 0.001, "drift_px": 0.0, "bit_depth": 8}

# contacts (v3): fitted the same way to the train frames of cdsem-contacts (Zeiss, 0.901 nm/px;
# Ctest3, Ctest4: dark holes); contacts-pillars to its val frame Ctest2 (bright pillars).
_CONTACTS = {**_IMAGING, "pitch_nm": 47.7, "width_frac": (0.54, 0.68), "stagger": False, "hole_jitter": 0.01,
             "missing_prob": (0.0, 0.05), "defect_prob": 0.0, "pillars": False,
             "pattern_level": (0.36, 0.42), "hole_level": (0.195, 0.223), "rim_amp": (0.028, 0.032),
             "rim_width_nm": 3.06, "halo_amp": 0.021, "psf_sigma_nm": (2.14, 2.25), "sidewall_nm": (2.0, 2.13),
             "dose": (144.0, 150.0), "detector_sigma": 0.0096, "noise_corr_px": 0.5, "ler_sigma_nm": (1.06, 1.08),
             "charging_amp": (0.0, 0.03), "texture_amp": 0.0, "scan_asymmetry": 0.0, "brightness": 0.0,
             "contrast": 1.0, "drift_px": 0.0, "scanline_sigma": 0.001}
_CONTACTS_PILLARS = {**_CONTACTS, "pitch_nm": 43.0, "width_frac": 0.675, "missing_prob": 0.0, "pillars": True,
                     "pattern_level": 0.586, "background_level": 0.396, "rim_amp": 0.034, "rim_width_nm": 3.25,
                     "halo_amp": 0.0215, "psf_sigma_nm": 1.62, "sidewall_nm": 2.3, "dose": 170.6,
                     "detector_sigma": 0.0092, "ler_sigma_nm": 0.99, "charging_amp": 0.0}

PRESETS: dict[str, Preset] = {
    "ic-metal": Preset("ic-metal", "top-down SEM of a routed metal layer, denoised (the MIIC kind): flat gray metal "
                       "plateaus over most of the field, narrow dark trenches, a thin bright rim on both edges, "
                       "rounded line ends", "manhattan", 512.0, _IC_METAL),
    "line-space": Preset("line-space", "line/space grating as a Hitachi CD-SEM sees it (fitted to the cdsem-lines "
                         "train/val frames): 25 nm pitch, soft edges, left edges brighter, Poisson noise",
                         "line_space", 212.0, _LINE_SPACE),
    "contacts": Preset("contacts", "contact-hole array in a film as a Zeiss CD-SEM sees it (fitted to the "
                       "cdsem-contacts train frames): dark holes, soft edges, strong white noise, slow charging",
                       "contacts", 230.0, _CONTACTS),
    "contacts-pillars": Preset("contacts-pillars", "pillar array (bright discs on a darker film) as a Zeiss CD-SEM "
                               "sees it (fitted to the cdsem-contacts val frame)", "contacts", 230.0,
                               _CONTACTS_PILLARS),
    "particles": Preset(  # difficulty fixed and documented in semlab.data.particles
        "particles",
        "compact particles on a substrate (pattern), half with a bright rim and a darker core, "
        "20-40% touching another; debris (defect): 1-3 small discs (radius 2-5 px) per frame, "
        "much brighter than the particles (all edge); uneven illumination",
        "particles", 256.0,
        {**_IMAGING, "particle_radius_nm": [2.0, 12.0], "particle_density": (0.3, 0.6),
         "touching_frac": (0.2, 0.4), "step_to_noise": (3.5, 7.5), "core_drop": (0.5, 0.8),
         "core_rim_amp": (0.15, 0.3), "rim_amp": (0.02, 0.06), "halo_amp": (0.0, 0.03),
         "charging_amp": (0.06, 0.12), "drift_px": 0.0, "ler_sigma_nm": (0.3, 0.6), "corner_radius_nm": 0.0,
         "psf_sigma_nm": (1.0, 2.0), "detector_sigma": (0.004, 0.01), "scanline_sigma": (0.002, 0.005),
         "texture_amp": (0.005, 0.015), "defect_prob": 1.0, "defect_radius_nm": [2.0, 5.0],
         "defect_level": (0.85, 0.95)},
    ),
    "comb": Preset(
        "comb",
        "interdigitated comb test structure with tip-to-spine gaps",
        "comb", 512.0,
        {**_IMAGING, "pitch_nm": (40.0, 80.0), "width_frac": (0.4, 0.6), "tip_gap_nm": (10.0, 30.0),
         "vertical": ("p", 0.5)},
    ),
    "ic-metal-noisy": Preset("ic-metal-noisy", "the ic-metal look up to simulator v2: thin gray metal lines on a "
                             "dark field, strong coarse noise and texture", "manhattan", 512.0, _IC_METAL_V2),
    "line-space-v2": Preset("line-space-v2", "line-space up to simulator v2", "line_space", 384.0, _LINE_SPACE_V2),
    "contacts-v2": Preset("contacts-v2", "contacts up to simulator v2", "contacts", 512.0, _CONTACTS_V2),
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


# ----------------------------------------------------------------------------------
# Gaussian random fields, sampled directly in the Fourier domain.
#
# A real white-noise field w has an rfft2 W whose bins are independent circular complex
# Gaussians with E|W|^2 = h*w, except that the kx = 0 and kx = Nyquist columns are
# Hermitian along ky. Drawing every bin as an independent circular complex Gaussian
# and taking irfft2 keeps only the real part of those two columns (after the ky
# transform), which halves their variance and leaves the covariance otherwise exact;
# multiplying the filter there by sqrt(2) restores it. So irfft2(S * H) has exactly
# the covariance of irfft2(rfft2(w) * H), without the forward transform.


def _rfft_weights(w: int) -> np.ndarray:
    """How often each rfft column appears in the full spectrum (1 or 2)."""
    wt = np.full(w // 2 + 1, 2.0)
    wt[0] = 1.0
    if w % 2 == 0:
        wt[-1] = 1.0
    return wt


def _finish_filter(amp: np.ndarray, w: int) -> np.ndarray:
    """Normalise an amplitude filter on the rfft grid to unit field variance and apply
    the sqrt(2) boost of the self-conjugate columns (see above)."""
    h = amp.shape[0]
    wt = _rfft_weights(w)
    var = float((wt[None, :] * amp.astype(np.float64) ** 2).sum()) / (h * w) ** 2
    out = amp / math.sqrt(max(var, 1e-300))
    out[:, 0] *= math.sqrt(2.0)
    if w % 2 == 0:
        out[:, -1] *= math.sqrt(2.0)
    return out.astype(np.float32)


def normal32(rng: np.random.Generator, shape) -> np.ndarray:
    """Standard normal float32 samples by the Box-Muller transform of float32 uniforms:
    exact in distribution up to the 2^-24 resolution of the uniforms (tails cut at
    5.8 sigma), and ~1.6x faster here than numpy's ziggurat (`semlab bench simulate`
    measures the simulator as a whole)."""
    n = int(np.prod(shape))
    m = (n + 1) // 2
    u = rng.random((2, m), dtype=np.float32)
    r = np.log1p(-u[0])  # u in [0, 1): log(1 - u) is finite
    r *= -2
    np.sqrt(r, out=r)
    a = u[1]
    a *= np.float32(2 * math.pi)
    out = np.empty(2 * m, np.float32)
    np.multiply(r, np.cos(a), out=out[:m])
    np.multiply(r, np.sin(a), out=out[m:])
    return out[:n].reshape(shape)


def _band_noise(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    """Independent circular complex Gaussians with E|S|^2 = 1 on an (n, m) grid."""
    z = normal32(rng, (n, m, 2))
    z *= np.float32(math.sqrt(0.5))
    return z.view(np.complex64)[..., 0]


def _spectral_noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Independent circular complex Gaussians with E|S|^2 = 1 on the (h, w//2+1) grid."""
    return _band_noise(rng, h, w // 2 + 1)


def _field(rng: np.random.Generator, filt: np.ndarray, shape: tuple[int, int], sigma: float) -> np.ndarray:
    s = _spectral_noise(rng, *shape)
    s *= filt
    out = sfft.irfft2(s, s=shape, workers=1)
    out *= np.float32(sigma)
    return out


@lru_cache(maxsize=32)
def _palasantzas_filter(h: int, w: int, corr_px: float, alpha: float) -> np.ndarray:
    """Amplitude filter (rfft grid) of a 2-D Palasantzas PSD, unit field variance."""
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.rfftfreq(w)[None, :]
    k2 = (2 * np.pi) ** 2 * (ky * ky + kx * kx)
    psd = (1.0 + k2 * corr_px ** 2) ** (-(1.0 + alpha))
    psd[0, 0] = 0.0
    return _finish_filter(np.sqrt(psd), w)


def correlated_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float,
                     corr_px: float, alpha: float = 0.5) -> np.ndarray:
    """A stationary (periodic) Gaussian random field with std `sigma` and a Palasantzas
    (K-correlation) spectrum of correlation length `corr_px` and exponent `alpha`."""
    h, w = shape
    if sigma == 0:
        return np.zeros(shape, np.float32)
    return _field(rng, _palasantzas_filter(h, w, float(max(corr_px, 1e-3)), float(alpha)), (h, w), sigma)


def _edge_filter(h: int, w: int, corr_px: float, alpha: float, across_px: float, axis: int) -> np.ndarray:
    """Amplitude filter: 1-D Palasantzas PSD along `axis` times a Gaussian across it
    (separable, so built from two 1-D factors)."""
    fy = np.fft.fftfreq(h)
    fx = np.fft.rfftfreq(w)
    along, across = (fy, fx) if axis == 0 else (fx, fy)
    a = (1.0 + (2 * np.pi * along * corr_px) ** 2) ** (-(0.5 + alpha) / 2)
    a[0] = 0.0  # no mean offset of an edge
    g = np.exp(-2 * (np.pi * across_px * across) ** 2)  # Gaussian transfer function
    amp = np.outer(a, g) if axis == 0 else np.outer(g, a)
    return _finish_filter(amp, w)


def edge_roughness(rng: np.random.Generator, shape: tuple[int, int], sigma: float, corr_px: float,
                   alpha: float, across_px: float, axis: int) -> np.ndarray:
    """Edge displacement for edges running along `axis`: a 1-D Palasantzas process along
    the edge (std `sigma`, correlation length `corr_px`, roughness exponent `alpha`),
    varying smoothly across it (Gaussian of `across_px`), so each edge stays a single-valued
    curve and edges farther apart than ~2 `across_px` are independent.

    Only the band of spatial frequencies across the edge where the Gaussian's transfer
    function exceeds 1e-3 is drawn (the rest contributes < 1e-6 of the variance)."""
    h, w = shape
    s = float(max(across_px, 0.5))
    filt = _edge_filter(h, w, float(max(corr_px, 1e-3)), float(alpha), s, int(axis))
    fcut = math.sqrt(math.log(1e3) / 2) / (math.pi * s)  # cycles/px
    spec = np.zeros((h, w // 2 + 1), np.complex64)
    if axis == 0:  # across = x = the rfft axis: columns 0..c-1
        c = min(int(fcut * w) + 1, w // 2 + 1)
        spec[:, :c] = _band_noise(rng, h, c)
        spec[:, :c] *= filt[:, :c]
    else:  # across = y: rows |fy| < fcut
        c = min(int(fcut * h) + 1, h // 2 + 1)
        rows = np.r_[0:c, h - c + 1:h] if c > 1 else np.r_[0:1]
        rows = np.unique(rows % h)
        band = _band_noise(rng, len(rows), w // 2 + 1)
        band *= filt[rows]
        spec[rows] = band
    out = sfft.irfft2(spec, s=(h, w), workers=1)
    out *= np.float32(sigma)
    return out


def _gauss_transfer(shape: tuple[int, int], s: float) -> np.ndarray:
    gy = np.exp(-2 * (np.pi * s * np.fft.fftfreq(shape[0])) ** 2).astype(np.float32)
    gx = np.exp(-2 * (np.pi * s * np.fft.rfftfreq(shape[1])) ** 2).astype(np.float32)
    return np.outer(gy, gx)


def gaussian_blur(img: np.ndarray, s: float, mode: str = "edge") -> np.ndarray:
    """Gaussian blur of sigma `s` px by FFT on a padded copy (`mode`: numpy pad mode for
    the border: "edge" repeats the border pixels, "symmetric" mirrors them), float32.
    Uses the continuous Gaussian's transfer function, so it matches
    scipy.ndimage.gaussian_filter (modes "nearest" / "reflect") to < 1e-3 for s >= 1 px;
    below that scipy's sampled kernel is itself no longer close to a Gaussian."""
    h, w = img.shape
    r = int(math.ceil(4.0 * s)) + 1
    H = sfft.next_fast_len(h + 2 * r, real=True)
    W = sfft.next_fast_len(w + 2 * r, real=True)
    pad = np.pad(img.astype(np.float32, copy=False), ((r, H - h - r), (r, W - w - r)), mode=mode)
    f = sfft.rfft2(pad, workers=1)
    f *= _gauss_transfer((H, W), float(s))
    return sfft.irfft2(f, s=(H, W), workers=1)[r:r + h, r:r + w]


@lru_cache(maxsize=64)
def _gauss_var_factor(s: float) -> float:
    """Variance of white noise after scipy's gaussian_filter1d(sigma=s, truncate=4)."""
    delta = np.zeros(2 * int(4.0 * s + 0.5) + 1)
    delta[len(delta) // 2] = 1.0
    return float((ndimage.gaussian_filter1d(delta, s, truncate=4.0) ** 2).sum())


_EPS = 1e-6


def _signed_distance(cov: np.ndarray, sigma_px: float) -> np.ndarray:
    """Coverage -> approximate signed distance (px) via the blurred-edge inverse CDF.

    The coverage of a straight edge blurred by a Gaussian of sigma s is Phi(d / s_eff)
    with s_eff^2 = s^2 + 1/12 (the pixel box), so d = s_eff * ndtri(B).
    """
    s = max(sigma_px, 0.6)
    b = gaussian_blur(cov, s, "edge")
    np.clip(b, _EPS, 1 - _EPS, out=b)
    d = special.ndtri(b)
    d *= np.float32(math.sqrt(s * s + 1 / 12))
    return d


def _ramp(d: np.ndarray, width_px: float) -> np.ndarray:
    if width_px <= 1e-3:
        return (d > 0).astype(np.float32)
    return np.clip(0.5 + d / width_px, 0.0, 1.0)


def _layout(rng, preset: Preset, p: dict, h: int, w: int, px: float) -> L.Layout:
    pitch = p.get("pitch_nm", 0.0) / px
    width = pitch * p.get("width_frac", 0.0)
    if preset.layout == "manhattan":
        gap = p.get("min_gap_frac")  # tip-to-tip gap, as a fraction of the pitch (None: 3 widths)
        lay = L.manhattan(rng, h, w, pitch=pitch, width=width, fill=p["fill"], bend_prob=p["bend_prob"],
                          horizontal=p["horizontal"], min_gap=None if gap is None else gap * pitch)
    elif preset.layout == "line_space":
        lay = L.line_space(rng, h, w, pitch=pitch, cd=width, vertical=p["vertical"],
                           tip_gap=p["tip_gap_nm"] / px, line_end_prob=p["line_end_prob"], tilt=p.get("tilt", 0.0))
    elif preset.layout == "contacts":
        lay = L.contacts(rng, h, w, pitch=pitch, diameter=width, jitter=p["hole_jitter"],
                         missing_prob=p["missing_prob"], stagger=p["stagger"], pillars=bool(p.get("pillars")))
    elif preset.layout == "particles":  # the particles themselves: semlab.data.particles
        lay = L.Layout(h, w)
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
    # `ler_across_nm` (optional): how far across the edges the roughness stays correlated;
    # edges more than ~4x apart roughen independently (fit-sim: from the edge correlations)
    ac = p.get("ler_across_nm")
    across = max(0.5 * corr, 3.0 * sigma) if ac is None else max(float(ac) / px, 0.5)
    f_v = edge_roughness(rng, gx.shape, sigma, corr, p["ler_alpha"], across, axis=0)
    f_h = edge_roughness(rng, gx.shape, sigma, corr, p["ler_alpha"], across, axis=1)
    wv = gx * gx / (gx * gx + gy * gy + 1e-12)
    return f_h + wv * (f_v - f_h)


def get_preset(name: "str | Preset") -> Preset:
    """A built-in preset by name, or `name` itself if it is a `Preset` (e.g. from
    `semlab.data.presetfile.load_preset_file`)."""
    if isinstance(name, Preset):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}") from None


def _params(pre: Preset, rng: np.random.Generator, disable, overrides: dict, shot_noise_method: str) -> dict:
    """Validate the options, then draw the preset's parameters (the first use of `rng`)."""
    if shot_noise_method not in SHOT_NOISE_METHODS:
        raise ValueError(f"shot_noise_method {shot_noise_method!r}; valid: {SHOT_NOISE_METHODS}")
    unknown = set(overrides) - set(pre.params)
    if unknown:
        raise KeyError(f"unknown simulator parameter(s) {sorted(unknown)}; valid: {sorted(pre.params)}")
    bad = set(disable) - set(EFFECTS)
    if bad:
        raise KeyError(f"unknown effect(s) {sorted(bad)}; valid: {list(EFFECTS)}")
    p = looks.draw(rng, pre.params, _draw)  # one frame look, if the preset has looks
    for eff in disable:
        p.update(EFFECTS[eff][1])
    p.update(overrides)
    return p


def simulate(preset: str = "ic-metal", size: int | tuple[int, int] = 256, seed=0, *,
             disable: tuple[str, ...] | list[str] = (), pixel_nm: float | None = None,
             with_contours: bool = True, shot_noise_method: str = "auto", **overrides) -> SimResult:
    """Simulate one SEM image with its label mask, noise-free image and contours.

    `size` is px (square) or (height, width); the pixel size defaults to the preset's
    field of view divided by the size (the same structures at any resolution).
    `disable` switches effects of `EFFECTS` off; `overrides` set parameters;
    `shot_noise_method` is "auto" or "exact" (see `shot_noise`).
    """
    pre = get_preset(preset)
    h, w = (size, size) if isinstance(size, int) else size
    rng = _rng(seed)
    p = _params(pre, rng, disable, overrides, shot_noise_method)
    px = float(pixel_nm) if pixel_nm else pre.field_of_view_nm / max(h, w)
    parts = P.particle_layout(rng, h, w, px, p) if pre.layout == "particles" else None
    lay = _layout(rng, pre, p, h, w, px)

    # 2-3: signed distance with corner rounding and LER
    s_round = p["corner_radius_nm"] / 1.2 / px
    cov = L.rasterize_rects(lay.rects, h, w) if parts is None else L.rasterize_discs([q[:3] for q in parts], h, w)
    phi_p = _signed_distance(cov, s_round)
    phi_h = phi_d = None
    if lay.holes:
        phi_h = _signed_distance(L.rasterize_discs(lay.holes, h, w), s_round)
    gy, gx = np.gradient(phi_p if phi_h is None else np.minimum(phi_p, -phi_h))
    ler = _ler_field(rng, gy, gx, p, px)
    if p.get("lpr_sigma_nm") or p.get("wander_nm"):  # structures (lpr) or rows (scan wander) move as a whole (v4)
        from semlab.data.placement import placement_terms
        ler += placement_terms(rng, cov > 0.5, gy, gx, p, px)
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

    rim_core = None
    if parts is not None:
        if math.isfinite(p["dose"]) and "dose" not in overrides:
            p["dose"] = P.dose_for_step_to_noise(p, float(cov.mean()))
        rim_core = P.rim_core_fields(parts, h, w, p["rim_width_nm"] / px)
        p["particles"] = parts
    image, clean = _form_image(rng, p, px, phi_p, phi_h, phi_d, d, gx, mask, shot_noise_method, rim_core)

    contours = structure_contours(d) if with_contours else []
    p.update({"preset": pre.name, "pixel_nm": px, "height": h, "width": w,
              "seed": list(seed) if isinstance(seed, (tuple, list)) else int(seed),
              "n_rects": len(lay.rects), "n_holes": len(lay.holes), "n_defects": len(lay.defects),
              "disabled": list(disable), "shot_noise_method": shot_noise_method})
    p = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in p.items()}
    return SimResult(image, mask, clean, contours, p)


def render_mask(mask: np.ndarray, preset: str = "ic-metal", seed=0, *, pixel_nm: float | None = None,
                disable: tuple[str, ...] | list[str] = (), shot_noise_method: str = "auto",
                **overrides) -> SimResult:
    """The simulator as a mask -> SEM translator: the physics baseline for generators.

    Applies `simulate`'s image formation (material contrast, sidewall, edge rims and
    halos, texture, beam blur, charging, gain, shot/detector/scan noise) to a given
    canonical label mask. The imaging parameters are drawn from `preset` for `seed`, as
    a generator would have to choose them: it does not know the real image's brightness,
    contrast, dose or blur. Edges are the mask's pixel boundaries rounded by the preset's
    corner radius; no line-edge roughness is added (a mask already has its edges). Under
    a defect the structure is taken from the nearest non-defect pixel. The returned
    `mask` is the input (plus a data bar if the preset draws one)."""
    m = np.asarray(mask)
    if m.ndim != 2 or not np.issubdtype(m.dtype, np.integer):
        raise ValueError(f"mask must be an integer (H, W) label map, got {m.dtype} {m.shape}")
    if m.size and (m.min() < 0 or m.max() >= labels.NUM_CLASSES):
        raise ValueError(f"mask labels must be in 0..{labels.NUM_CLASSES - 1}, got {int(m.min())}..{int(m.max())}")
    pre = get_preset(preset)
    h, w = m.shape
    rng = _rng(seed)
    p = _params(pre, rng, disable, overrides, shot_noise_method)
    px = float(pixel_nm) if pixel_nm else pre.field_of_view_nm / max(h, w)
    base = m
    is_def = m == labels.DEFECT
    if is_def.all():
        base = np.zeros_like(m)
    elif is_def.any():  # nearest non-defect label beneath each defect pixel
        idx = ndimage.distance_transform_edt(is_def, return_distances=False, return_indices=True)
        base = m[tuple(idx)]
    s_round = p["corner_radius_nm"] / 1.2 / px
    phi_p = _signed_distance(np.isin(base, (labels.PATTERN, labels.HOLE)).astype(np.float32), s_round)
    phi_h = phi_d = None
    if (base == labels.HOLE).any():
        phi_h = _signed_distance((base == labels.HOLE).astype(np.float32), s_round)
    d = phi_p if phi_h is None else np.minimum(phi_p, -phi_h)
    gy, gx = np.gradient(d)
    if is_def.any():
        phi_d = _signed_distance(is_def.astype(np.float32), 0.6)
    out_mask = m.astype(np.uint8, copy=True)
    image, clean = _form_image(rng, p, px, phi_p, phi_h, phi_d, d, gx, out_mask, shot_noise_method)
    p.update({"preset": pre.name, "pixel_nm": px, "height": h, "width": w,
              "seed": list(seed) if isinstance(seed, (tuple, list)) else int(seed),
              "rendered_from_mask": True, "disabled": list(disable), "shot_noise_method": shot_noise_method})
    p = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in p.items()}
    return SimResult(image, out_mask, clean, structure_contours(d), p)


def _form_image(rng: np.random.Generator, p: dict, px: float, phi_p: np.ndarray, phi_h, phi_d, d: np.ndarray,
                gx: np.ndarray, mask: np.ndarray, shot_noise_method: str,
                rim_core: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Image formation (steps 4-12) from signed distances (px) of the pattern `phi_p`,
    the holes `phi_h` and the defects `phi_d` (None when absent), the combined edge
    distance `d` and its x gradient `gx`. Returns (noisy image, noise-free image);
    a data bar, if on, is written into `mask` and `p`."""
    h, w = phi_p.shape
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
    if rim_core is not None:  # the particles preset's rim-and-core particles
        sig += p["core_rim_amp"] * rim_core[1] - p["core_drop"] * (pat - bg) * rim_core[0]
    if phi_d is not None:
        dd = _ramp(phi_d, max(sw, 1.0))
        sig = sig * (1 - dd) + p["defect_level"] * dd
        if p["rim_amp"] > 0:
            sig += 0.5 * p["rim_amp"] * np.exp(-0.5 * (phi_d / 1.5) ** 2)

    # 7-9: PSF, charging, gain
    if p["psf_sigma_nm"] > 0:
        sig = gaussian_blur(sig, p["psf_sigma_nm"] / px, "symmetric")
    if p["charging_amp"] > 0:
        ang = rng.uniform(0, 2 * np.pi)
        yy = np.arange(h, dtype=np.float32) / h - 0.5
        xx = np.arange(w, dtype=np.float32) / w - 0.5
        cy, cx = (float(v) for v in rng.uniform(-0.5, 0.5, 2))
        a = p["charging_amp"]
        # gradient + separable Gaussian bump, each factor built in 1-D
        sig += np.outer(a * 0.5 * np.exp(-(yy - cy) ** 2 / 0.18), np.exp(-(xx - cx) ** 2 / 0.18))
        sig += (a * math.cos(ang) * yy)[:, None] + (a * math.sin(ang) * xx)[None, :]
    clean = np.clip(p["contrast"] * (sig - 0.5) + 0.5 + p["brightness"], 0.0, 1.0).astype(np.float32)

    # 10-12: noise
    img = clean.copy()
    if math.isfinite(p["dose"]):
        img = shot_noise(rng, clean, p["dose"], shot_noise_method)
    if p["detector_sigma"] > 0:
        n = normal32(rng, (h, w))
        gain = p["detector_sigma"]
        if p["noise_corr_px"] > 0:  # amplifier bandwidth; rescaled to unit variance
            n = ndimage.gaussian_filter1d(n, p["noise_corr_px"], axis=1, truncate=4.0)
            gain /= math.sqrt(_gauss_var_factor(float(p["noise_corr_px"])))
        n *= np.float32(gain)
        img += n
    sc = float(p.get("scan_corr_px", 0.0) or 0.0)
    if sc > 0:  # the whole noise (shot + detector) low-passed along the scan, variance kept
        img -= clean
        img = ndimage.gaussian_filter1d(img, sc, axis=1, truncate=4.0)
        img *= np.float32(1.0 / math.sqrt(_gauss_var_factor(sc)))
        img += clean
    if p["scanline_sigma"] > 0:
        img += (p["scanline_sigma"] * rng.standard_normal((h, 1), dtype=np.float32))
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
    if p.get("bit_depth"):  # the detector's ADC: gray levels of a `bit_depth`-bit file (v4)
        q = np.float32(2 ** int(p["bit_depth"]) - 1)
        image = np.rint(image * q) / q
    return image, clean


SHOT_NOISE_METHODS = ("auto", "exact")
_CF_MIN_COUNTS = 8.0


def shot_noise(rng: np.random.Generator, clean: np.ndarray, dose: float, method: str = "auto") -> np.ndarray:
    """Detected-electron shot noise: counts ~ Poisson(clean * dose), returned / dose (float32).

    `method="exact"` draws every pixel with numpy's Poisson sampler (~35 ns/pixel).
    `method="auto"` (default) draws exactly where the mean count is below 8 and
    elsewhere uses the Cornish-Fisher corrected normal quantile,
    `rint(lam + sqrt(lam - 5/36) z + (z^2 - 1) / 6)`, which matches the Poisson mean,
    variance and skewness; its total-variation distance to Poisson(lam) is below 0.003
    for lam >= 8 (tests/test_simulate.py checks it against scipy.stats.poisson), at
    about a third of the cost.
    """
    lam = clean * np.float32(dose)
    if method == "exact":
        counts = rng.poisson(lam).astype(np.float32)
    elif method == "auto":
        z = normal32(rng, lam.shape)
        counts = np.sqrt(np.maximum(lam - np.float32(5 / 36), 0)) * z
        counts += lam
        z *= z
        z -= 1
        z *= np.float32(1 / 6)
        counts += z
        np.rint(counts, out=counts)
        np.maximum(counts, 0, out=counts)
        low = lam < _CF_MIN_COUNTS
        if low.any():
            counts[low] = rng.poisson(lam[low])
    else:
        raise ValueError(f"shot-noise method {method!r}; valid: {SHOT_NOISE_METHODS}")
    counts *= np.float32(1.0 / dose)
    return counts


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
    f = (shifts - k)[:, None].astype(img.dtype)
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
