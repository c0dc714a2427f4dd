"""The classical contour extractor: SegSEM's fallback when SAM2 is not confident.

No weights and a fraction of a second per image. The steps, each with a named setting
of `ContourSettings`:

1. **Denoise** (`denoise`, `denoise_strength`, `smooth_px`): the same denoisers as the
   classical segmenter (`semlab.segment.classical.denoise`); Gaussian by default.
2. **Threshold** (`threshold`): Otsu (global) or Sauvola (local, for charging
   gradients) on the denoised image gives the bright phase (the pattern; `polarity`
   "dark" inverts the image first). Components smaller than `min_area_px` are dropped
   (particles, noise specks) and holes smaller than `min_hole_px` filled. With
   `edge_scale="auto"` (step 4) this is done again with the denoising and the area
   limits scaled to the measured edge width.
3. **Structures**: the 4-connected components of the pattern, each with its own
   marching-squares contours (outer boundary and holes, closed along the frame when
   cut by it). With `hole_structures`, enclosed dark regions (not touching the frame)
   are also structures of class *hole* (contact holes, vias), so the hybrid can choose
   per contact as well.
4. **Edge scale** (`edge_scale`): the profile lengths below are px at the reference
   edge width (4.5 px: line/space at 256 px, 1.5 nm pixels). With "auto" the median
   width of the intensity drop across the coarse edges is measured
   (`measure_edge_width`) and all of them are scaled by width / 4.5, so the same
   settings work at 256 and at 512 px of the same field, and on real images.
5. **Sub-pixel refinement** (`refine`): the coarse contour is smoothed
   (`coarse_smooth_px`) and resampled every `spacing_px`; at each point the
   `profile_sigma_px`-smoothed image is sampled along the outward normal over
   +-`profile_half_px` by cubic-spline interpolation (`ProfileSampler`: a bilinear
   profile has a piecewise-constant derivative, whose maximum wanders within a pixel).
   With `refine="gradient"` the edge is the maximum of the intensity drop along the
   profile (bright inside, dark outside), located to a fraction of the sample step by a
   parabola through the three samples around the peak; with `refine="threshold"` it is
   where the profile crosses `threshold_level` of the way from its minimum to its
   maximum, the crossing nearest the gradient peak. The profiles are taken twice, the
   second time centred on the first estimate. Points without a clear edge inside the
   window take the value interpolated from their neighbours. The refined points are
   then smoothed along the contour (`edge_smooth_px`, by "twicing" a Gaussian, which
   does not shrink curved edges), averaging the noise of neighbouring profiles while
   keeping line-edge roughness longer than a few px.
6. **Edge bias** (`edge_offset_px`): in an SEM image the steepest intensity change
   is not exactly at the physical edge. In the simulator (`semlab.data.simulate`) the
   true edge is the middle of the sidewall ramp, while the bright rim peaks
   `rim_offset_nm` inside it with width `rim_width_nm`, the dark halo lies outside,
   and the beam blur (`psf_sigma_nm`) and scan asymmetry shift the steepest slope; the
   net offset depends on those parameters, not on the extractor. The refined edges
   are moved inwards by `edge_offset_px` x the edge scale (negative: outwards), which
   `calibrate_edge_offset` fits to the signed EPE measured on training images (the
   same idea as the classical segmenter's `edge_offset_px`). What calibration cannot
   remove is the image-to-image spread of that bias when the imaging parameters vary
   (in the simulator: rim offset 0.5-1.5 nm, blur 1.5-3 nm, drawn per image).

7. **Weak contours** (`min_edge_strength`): a pattern hole or a pattern component
   whose median edge strength (the height of the intensity drop at its edge) is below
   0.6 x the image's median is no edge -- a dark noise patch inside a line, a faint
   blob in a space, the dip between two rims of a narrow trench -- and is dropped.

Hole structures reuse the refined hole contours of the pattern around them, so the
masks of a pattern and of its holes tile the image exactly.

Frame closures (the parts of a contour running along the image frame) are neither
refined nor smoothed: they are not edges.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Iterable, Sequence

import numpy as np
from scipy import ndimage as ndi

from semlab import labels
from semlab.contours.extract import (
    true_runs,
    close_contour,
    mask_contours,
    open_contour,
    outward_normals,
    rasterize_contours,
    resample_contour,
    signed_area,
    smooth_signal,
    to_nm,
)

__all__ = [
    "ContourSettings",
    "Structure",
    "ClassicalContours",
    "extract_classical_contours",
    "refine_contour",
    "ProfileSampler",
    "measure_edge_width",
    "calibrate_edge_offset",
    "REFINERS",
    "THRESHOLDS",
]

REFINERS = ("gradient", "threshold", "none")
THRESHOLDS = ("otsu", "sauvola")
_DENOISERS = ("gaussian", "nlm", "bilateral", "tv", "none")


@dataclass(frozen=True)
class ContourSettings:
    """Settings of the classical contour extractor (all lengths in px; the smoothing,
    profile and offset lengths and the area limits are at the reference edge width and
    follow `edge_scale`, see `scaled`).

    Defaults were chosen on simulated line/space images (256 and 512 px, default noise;
    `tools/measure_contours.py`), and `edge_offset_px` is meant to be calibrated
    (`calibrate_edge_offset`) for each imaging setup."""

    denoise: str = "gaussian"  # denoiser for the threshold step; see semlab.segment.classical.denoise
    denoise_strength: float = 0.8  # x estimated noise sigma (nlm, bilateral, tv)
    smooth_px: float = 1.0  # Gaussian sigma of denoise="gaussian"
    threshold: str = "otsu"  # "otsu" (global) or "sauvola" (local)
    sauvola_window: int = 51  # odd window (px) of the Sauvola threshold
    polarity: str = "bright"  # the pattern is "bright" (SE images of lines, metal) or "dark"
    min_area_px: int = 40  # pattern components smaller than this (x edge scale^2) are dropped
    min_hole_px: int = 8  # holes in the pattern smaller than this (x edge scale^2) are filled
    min_edge_strength: float = 0.6  # contours with a weaker median edge (x the image median) are dropped
    hole_structures: bool = True  # enclosed dark regions become structures of class "hole"
    refine: str = "gradient"  # "gradient" (steepest intensity drop), "threshold" or "none"
    profile_sigma_px: float = 1.0  # Gaussian smoothing of the image sampled by the profiles
    profile_half_px: float = 4.0  # profiles span +- this along the normal
    profile_step_px: float = 0.25  # sample step along the profile
    threshold_level: float = 0.5  # refine="threshold": fraction from profile min to max
    coarse_smooth_px: float = 1.5  # smoothing of the staircase contour before taking normals
    spacing_px: float = 0.5  # point spacing of the refined contours
    edge_smooth_px: float = 2.5  # smoothing (px of arc length) of the refined points ("twicing")
    edge_offset_px: float = 0.0  # calibrated edge bias: edges move inwards by this x the edge scale
    edge_scale: float | str = "auto"  # x the profile lengths above; "auto": measured edge width / 4.5 px
    min_side: int = 16  # smaller images are refused

    def __post_init__(self):
        if self.denoise not in _DENOISERS:
            raise ValueError(f"denoise {self.denoise!r}; valid: {_DENOISERS}")
        if self.threshold not in THRESHOLDS:
            raise ValueError(f"threshold {self.threshold!r}; valid: {THRESHOLDS}")
        if self.refine not in REFINERS:
            raise ValueError(f"refine {self.refine!r}; valid: {REFINERS}")
        if self.polarity not in ("bright", "dark"):
            raise ValueError(f"polarity {self.polarity!r}; valid: 'bright', 'dark'")
        if not 0.0 < self.threshold_level < 1.0:
            raise ValueError(f"threshold_level must be in (0, 1), got {self.threshold_level}")
        if isinstance(self.edge_scale, str):
            if self.edge_scale != "auto":
                raise ValueError(f"edge_scale {self.edge_scale!r}; valid: 'auto' or a positive number")
        elif not self.edge_scale > 0:
            raise ValueError(f"edge_scale must be 'auto' or a positive number, got {self.edge_scale!r}")
        if self.profile_half_px <= 2 * self.profile_step_px or self.spacing_px <= 0:
            raise ValueError("profile_half_px must exceed two profile steps and spacing_px be positive")

    def describe(self) -> dict:
        return {"backend": "classical-contours", **asdict(self)}

    def scaled(self, factor: float) -> "ContourSettings":
        """The settings with the profile lengths (smoothing, profile span and step, edge
        smoothing) and the edge offset multiplied by `factor`, `edge_scale` fixed at 1:
        what the extractor uses on an image whose edges are `factor` times as wide as
        the reference. The offset scales too because the bias of an edge criterion
        grows with the width of the edge (blur, rim), so one calibrated number serves
        every resolution of the same imaging conditions."""
        f = float(factor)
        return replace(self, profile_sigma_px=self.profile_sigma_px * f, profile_half_px=self.profile_half_px * f,
                       profile_step_px=self.profile_step_px * f, edge_smooth_px=self.edge_smooth_px * f,
                       coarse_smooth_px=self.coarse_smooth_px * f, edge_offset_px=self.edge_offset_px * f,
                       edge_scale=1.0)


@dataclass
class Structure:
    """One connected structure: its mask, its contours and what it is.

    `id` is the structure's value in `ClassicalContours.structure_map`; `label` its
    canonical class (`semlab.labels.PATTERN` or `HOLE`). `contours` (px, closed, first
    point repeated) are the refined edges: for a pattern its outer boundary first, then
    its holes; for a hole structure the boundary of the hole (counter-clockwise around
    the hole). `mask` is the refined contours rasterised at pixel centres.
    `edge_strength` holds per contour point (open polygon) the height of the intensity
    drop's peak (intensity per px; NaN on frame closures and where no edge was found):
    a weak edge is a hint that the fallback is unsure there."""

    id: int
    label: int
    mask: np.ndarray
    contours: list[np.ndarray]
    coarse: list[np.ndarray] = field(default_factory=list)
    edge_strength: list[np.ndarray] = field(default_factory=list)
    touches_frame: bool = False

    @property
    def area_px(self) -> int:
        return int(self.mask.sum())

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(row0, col0, row1, col1) of the mask, end exclusive."""
        rr = np.nonzero(self.mask.any(1))[0]
        cc = np.nonzero(self.mask.any(0))[0]
        if not len(rr):
            return (0, 0, 0, 0)
        return (int(rr[0]), int(cc[0]), int(rr[-1]) + 1, int(cc[-1]) + 1)


@dataclass
class ClassicalContours:
    """The classical extractor's output for one image."""

    structures: list[Structure]
    structure_map: np.ndarray  # int32 (H, W): 0 nothing, else the structure id (pattern ids first)
    mask: np.ndarray  # uint8 (H, W) canonical labels from the refined contours
    denoised: np.ndarray
    threshold: float | np.ndarray
    settings: ContourSettings
    pixel_nm: float | None = None
    edge_width_px: float = float("nan")  # measured edge width (edge_scale="auto"), px
    scale: float = 1.0  # factor applied to the profile lengths of `settings`

    @property
    def contours(self) -> list[np.ndarray]:
        """All pattern edges (px): the contours of the pattern structures, outer and holes,
        the same set `SimResult.contours` gives for the truth."""
        return [c for s in self.structures if s.label == labels.PATTERN for c in s.contours]

    def contours_nm(self) -> list[np.ndarray]:
        if not self.pixel_nm:
            raise ValueError("the pixel size is unknown: pass pixel_nm to extract_classical_contours")
        return to_nm(self.contours, self.pixel_nm)

    def by_label(self, label: int) -> list[Structure]:
        return [s for s in self.structures if s.label == label]


# -------------------------------------------------------------------------- refinement


class ProfileSampler:
    """Cubic-spline samples of an image at arbitrary (row, col) points.

    Edge localisation differentiates the sampled profiles, so the interpolant must have
    a smooth derivative: bilinear interpolation makes the profile piecewise linear, its
    derivative piecewise constant, and the gradient maximum then jumps anywhere within
    a pixel (errors up to half a pixel, depending on the edge's sub-pixel phase). The
    B-spline coefficients are computed once per image (mirror boundary)."""

    def __init__(self, image: np.ndarray):
        self.shape = np.asarray(image).shape
        self.coef = ndi.spline_filter(np.asarray(image, np.float64), order=3, mode="mirror")

    def __call__(self, rr: np.ndarray, cc: np.ndarray) -> np.ndarray:
        return ndi.map_coordinates(self.coef, [rr.ravel(), cc.ravel()], order=3, mode="mirror",
                                   prefilter=False).reshape(rr.shape)


def _profiles(sampler: ProfileSampler, pts: np.ndarray, nrm: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Samples at pts + t * nrm: (n_points, n_t)."""
    rr = pts[:, 0:1] + t[None, :] * nrm[:, 0:1]
    cc = pts[:, 1:2] + t[None, :] * nrm[:, 1:2]
    return sampler(rr, cc)


def _peak(g: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Position (parabolic interpolation), height and validity of each row's maximum."""
    n, m = g.shape
    i = np.argmax(g, axis=1)
    rows = np.arange(n)
    hi = g[rows, i]
    ok = (i > 0) & (i < m - 1) & (hi > 0)
    ic = np.clip(i, 1, m - 2)
    g0, g1, g2 = g[rows, ic - 1], g[rows, ic], g[rows, ic + 1]
    den = g0 - 2 * g1 + g2
    d = np.where(den < 0, 0.5 * (g0 - g2) / np.where(den < 0, den, -1.0), 0.0)
    d = np.clip(d, -0.5, 0.5)
    step = t[1] - t[0]
    return t[ic] + d * step, hi, ok


def _crossing(v: np.ndarray, t: np.ndarray, level: float, near: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the downward crossing (inside -> outside) of lo + level (hi - lo),
    linearly interpolated, nearest to `near`."""
    lo, hi = v.min(1, keepdims=True), v.max(1, keepdims=True)
    z = v - (lo + level * (hi - lo))
    down = (z[:, :-1] > 0) & (z[:, 1:] <= 0)
    frac = z[:, :-1] / np.where(down, z[:, :-1] - z[:, 1:], 1.0)
    pos = t[:-1][None, :] + frac * (t[1] - t[0])
    pos = np.where(down, pos, np.inf)
    j = np.argmin(np.abs(pos - near[:, None]), axis=1)
    rows = np.arange(len(v))
    out = pos[rows, j]
    ok = np.isfinite(out) & ((hi - lo)[:, 0] > 0)
    return np.where(ok, out, 0.0), ok


def _fill_invalid(x: np.ndarray, ok: np.ndarray, closed: bool) -> np.ndarray:
    """Replace invalid entries by linear interpolation of the valid neighbours."""
    if ok.all():
        return x
    if not ok.any():
        return np.zeros_like(x)
    idx = np.arange(len(x))
    if closed:
        return np.interp(idx, idx[ok], x[ok], period=len(x))
    return np.interp(idx, idx[ok], x[ok])


def _run_normals(pts: np.ndarray, runs: list[np.ndarray]) -> np.ndarray:
    """Outward normals (normalised orientation) per point, from tangents taken within
    each run of edge points (one-sided at the run ends, so a closure chord next to the
    run does not tilt them); frame points get zeros."""
    nrm = np.zeros_like(pts)
    for run in runs:
        if len(run) < 2:
            continue
        t = np.gradient(pts[run], axis=0)
        n = np.stack([t[:, 1], -t[:, 0]], axis=1)
        ln = np.hypot(n[:, 0], n[:, 1])
        nrm[run] = n / np.where(ln > 0, ln, 1.0)[:, None]
    return nrm


def _twice_smooth(p: np.ndarray, sigma: float, closed: bool) -> np.ndarray:
    """Low-pass a curve's points along its length without shrinking it: Gaussian
    smoothing G moves a curve of curvature k inwards by about k sigma^2 / 2 (0.13 px for
    sigma 2.5 px on a 25 px radius); "twicing", G + G (1 - G) = 2G - G^2, keeps the
    noise suppression of G at high frequencies but passes slow shape (curvature) with an
    error of order (k sigma)^4 instead of (k sigma)^2. Smoothing the points, not the
    offsets from the coarse contour, also removes that contour's pixel staircase."""
    s1 = smooth_signal(p, sigma, closed=closed)
    return s1 + smooth_signal(p - s1, sigma, closed=closed)


def _locate(sampler: ProfileSampler, pts: np.ndarray, nrm: np.ndarray, s: ContourSettings,
            polarity: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edge offset along each normal (px), the peak height of the intensity drop, and
    validity, from profiles centred on `pts`."""
    t = np.arange(-s.profile_half_px, s.profile_half_px + 1e-9, s.profile_step_px)
    v = _profiles(sampler, pts, nrm, t) * float(polarity)
    g = -np.gradient(v, t, axis=1)  # intensity drop per px going outwards
    pos, hi, ok = _peak(g, t)
    if s.refine == "threshold":
        pos2, ok2 = _crossing(v, t, s.threshold_level, pos)
        pos, ok = np.where(ok2, pos2, pos), ok & ok2
    return pos, hi, ok


def refine_contour(profile_image: np.ndarray | ProfileSampler, contour: np.ndarray,
                   settings: ContourSettings | None = None, *, shape: tuple[int, int] | None = None,
                   polarity: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel refinement of one closed contour on a (smoothed) image.

    `contour` must be oriented (outer counter-clockwise as displayed, holes clockwise;
    `semlab.contours.extract` gives that); `polarity` +1 when the inside of the contour
    is brighter than the outside, -1 when darker. Works for any coarse contour (a SAM2
    mask's as well). The profiles are sampled twice: around the coarse contour, then
    around the first estimate, so a coarse contour a pixel or two off does not leave the
    edge near the end of the window (which biases the threshold's min/max). Returns the
    refined closed contour and the edge strength per point of the open polygon (NaN on
    the frame and where no edge was found). The settings' `edge_offset_px` is applied
    as given (`ContourSettings.scaled` is the caller's business). A `ProfileSampler`
    may be passed instead of the image to share its spline coefficients."""
    s = settings or ContourSettings()
    sampler = profile_image if isinstance(profile_image, ProfileSampler) else ProfileSampler(profile_image)
    shape = shape or sampler.shape
    pts, on_frame = resample_contour(contour, s.spacing_px, shape=shape, return_frame=True)
    # normals of a lightly smoothed copy: the staircase of a binary mask has none
    sig = s.coarse_smooth_px / s.spacing_px
    base = pts.copy()
    runs = true_runs(on_frame)
    closed_loop = not on_frame.any()
    for run in runs:
        base[run] = smooth_signal(pts[run], sig, closed=closed_loop)
    nrm = outward_normals(base) if closed_loop else _run_normals(base, runs)
    strength = np.full(len(pts), np.nan)
    off = np.zeros(len(pts))
    if s.refine != "none" and runs:
        edge = np.nonzero(~on_frame)[0]
        p0, n0 = base[edge], nrm[edge]
        pos1, _, ok1 = _locate(sampler, p0, n0, s, polarity)
        pos1 = np.where(ok1, pos1, 0.0)
        pos2, hi, ok2 = _locate(sampler, p0 + pos1[:, None] * n0, n0, s, polarity)
        pos = pos1 + np.where(ok2, pos2, 0.0)
        ok = ok1 | ok2
        strength[edge[ok2]] = hi[ok2]
        full = np.zeros(len(pts))
        full[edge] = pos
        valid = np.zeros(len(pts), bool)
        valid[edge] = ok
        for run in runs:
            off[run] = _fill_invalid(full[run], valid[run], closed_loop)
    out = base + off[:, None] * nrm
    esig = s.edge_smooth_px / s.spacing_px
    if esig > 0 and s.refine != "none":
        for run in runs:
            out[run] = _twice_smooth(out[run], esig, closed_loop)
    out -= np.where(on_frame, 0.0, s.edge_offset_px)[:, None] * nrm
    out[on_frame] = pts[on_frame]
    return close_contour(out), strength


# ------------------------------------------------------------------------- the pipeline


def _denoise(img: np.ndarray, s: ContourSettings) -> np.ndarray:
    from semlab.segment.classical import denoise

    return denoise(img, s.denoise, s.denoise_strength, s.smooth_px)


def _threshold(den: np.ndarray, s: ContourSettings) -> tuple[np.ndarray, float | np.ndarray]:
    from skimage import filters

    if s.threshold == "otsu":
        t = float(filters.threshold_otsu(den))
    else:
        t = filters.threshold_sauvola(den, window_size=int(s.sauvola_window) | 1)
    return den > t, t


def _clean(bright: np.ndarray, s: ContourSettings, scale: float = 1.0) -> np.ndarray:
    from skimage import morphology

    min_area = int(round(s.min_area_px * scale * scale))
    min_hole = int(round(s.min_hole_px * scale * scale))
    if min_area > 1:
        bright = morphology.remove_small_objects(bright, max_size=min_area - 1)
    if min_hole > 1:
        bright = ~morphology.remove_small_objects(~bright, max_size=min_hole - 1)
    return bright


def _segment(img: np.ndarray, s: ContourSettings, scale: float):
    """Denoised image, threshold and cleaned bright phase, at the given edge scale (the
    Gaussian denoiser's sigma and the area limits follow it)."""
    den = _denoise(img, replace(s, smooth_px=s.smooth_px * scale) if s.denoise == "gaussian" else s)
    bright, t = _threshold(den, s)
    return den, t, _clean(bright, s, scale)


def _drop_weak(structures: list[Structure], s: ContourSettings) -> list[Structure]:
    """Drop contours that are not edges: a pattern hole or a pattern component whose
    median edge strength is below `min_edge_strength` x the median over all pattern
    edges (a dark noise patch inside a line, a faint blob in a space). Hole structures
    of dropped holes go too; the rest are renumbered 1..n."""
    if s.min_edge_strength <= 0:
        return structures
    vals = [e[np.isfinite(e)] for st in structures if st.label == labels.PATTERN for e in st.edge_strength]
    vals = np.concatenate(vals) if vals else np.zeros(0)
    if vals.size == 0:
        return structures
    limit = s.min_edge_strength * float(np.median(vals))

    def weak(e: np.ndarray) -> bool:
        f = e[np.isfinite(e)]
        return f.size > 0 and float(np.median(f)) < limit

    dropped: set[tuple] = set()
    out = []
    for st in structures:
        if st.label == labels.PATTERN:
            if st.edge_strength and weak(st.edge_strength[0]) and len(st.contours) == 1:
                continue  # a blob without a real edge
            keep = [k for k, (c, e) in enumerate(zip(st.coarse, st.edge_strength))
                    if k == 0 or signed_area(c) > 0 or not weak(e)]
            dropped |= {_key(st.coarse[k]) for k in range(len(st.coarse)) if k not in keep}
            if len(keep) < len(st.coarse):
                st.coarse = [st.coarse[k] for k in keep]
                st.contours = [st.contours[k] for k in keep]
                st.edge_strength = [st.edge_strength[k] for k in keep]
                st.mask = _rasterize_local(st.contours, st.mask.shape)
        elif st.coarse and _key(st.coarse[0]) in dropped:
            continue
        out.append(st)
    for i, st in enumerate(out, start=1):
        st.id = i
    return out


def _crop_box(sl: tuple[slice, slice], shape: tuple[int, int], margin: int = 1) -> tuple[slice, slice]:
    return tuple(slice(max(q.start - margin, 0), min(q.stop + margin, n)) for q, n in zip(sl, shape))


def _rasterize_local(contours: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """`rasterize_contours` on the contours' bounding box only (same result, less work)."""
    out = np.zeros(shape, bool)
    if not contours:
        return out
    allp = np.concatenate([open_contour(c) for c in contours])
    r0 = max(int(math.floor(allp[:, 0].min())), 0)
    c0 = max(int(math.floor(allp[:, 1].min())), 0)
    r1 = min(int(math.ceil(allp[:, 0].max())) + 1, shape[0])
    c1 = min(int(math.ceil(allp[:, 1].max())) + 1, shape[1])
    if r1 > r0 and c1 > c0:
        shift = np.array([r0, c0], np.float64)
        out[r0:r1, c0:c1] = rasterize_contours([open_contour(c) - shift for c in contours], (r1 - r0, c1 - c0))
    return out


REFERENCE_EDGE_WIDTH_PX = 4.5  # median edge width of line-space images at 256 px (1.5 nm/px)


def measure_edge_width(image: np.ndarray, contours: Sequence[np.ndarray], *, sigma_px: float = 1.0,
                       max_points: int = 2000, polarity: int = 1) -> float:
    """Median full width at half maximum (px) of the intensity drop across the edges:
    the image is smoothed by `sigma_px`, profiles of +-12 px are sampled along the
    outward normals of (up to `max_points` points of) the oriented `contours`, and the
    width of the half-maximum run around each profile's steepest drop is taken. It
    measures how wide edges are in pixels (beam blur, sidewall and rim together), so the
    extractor's px settings can follow the resolution. NaN without usable edges."""
    img = ndi.gaussian_filter(np.asarray(image, np.float32), sigma_px) if sigma_px > 0 else image
    pts_all, nrm_all = [], []
    for c in contours:
        pts, on = resample_contour(c, 1.0, shape=img.shape, return_frame=True)
        if (~on).sum() < 8:
            continue
        base = pts.copy()
        for run in true_runs(on):
            base[run] = smooth_signal(pts[run], 3.0, closed=not on.any())
        nrm = outward_normals(base)
        pts_all.append(base[~on])
        nrm_all.append(nrm[~on])
    if not pts_all:
        return float("nan")
    pts, nrm = np.concatenate(pts_all), np.concatenate(nrm_all)
    if len(pts) > max_points:
        sel = np.linspace(0, len(pts) - 1, max_points).astype(int)
        pts, nrm = pts[sel], nrm[sel]
    step = 0.25
    t = np.arange(-12.0, 12.0 + 1e-9, step)
    v = _profiles(ProfileSampler(img), pts, nrm, t) * float(polarity)
    g = -np.gradient(v, t, axis=1)
    i = np.argmax(g, axis=1)
    gm = g[np.arange(len(g)), i]
    above = g >= 0.5 * gm[:, None]
    # run of samples above half maximum containing the peak
    idx = np.arange(len(t))[None, :]
    below_left = np.where(~above & (idx < i[:, None]), idx, -1).max(1)
    below_right = np.where(~above & (idx > i[:, None]), idx, len(t)).min(1)
    ok = (gm > 0) & (below_left >= 0) & (below_right < len(t))
    if not ok.any():
        return float("nan")
    return float(np.median((below_right - below_left - 1)[ok]) * step)


def _structure(sid: int, label: int, comp_crop: np.ndarray, box: tuple[slice, slice],
               shape: tuple[int, int]) -> Structure:
    """One structure with its coarse contours, from its component given on a crop
    (`box`) of the image with a 1-px margin: marching squares on the crop (closed along
    the frame where the crop is the image frame: the margin is background elsewhere).
    `_refine_structure` adds the refined contours and the mask."""
    shift = np.array([box[0].start, box[1].start], np.float64)
    coarse = [c + shift for c in mask_contours(comp_crop.astype(np.float32), 0.5)]
    h, w = shape
    touches = box[0].start == 0 or box[1].start == 0 or box[0].stop == h or box[1].stop == w
    touches = bool(touches and (comp_crop[0].any() or comp_crop[-1].any() or comp_crop[:, 0].any()
                                or comp_crop[:, -1].any()))
    mask = np.zeros(shape, bool)
    mask[box] = comp_crop
    return Structure(sid, label, mask, [], coarse, [], touches)


def _key(c: np.ndarray) -> tuple:
    """Identity of a coarse contour regardless of direction and start point."""
    a = open_contour(c)
    return (len(a), round(abs(signed_area(a)), 4), round(float(a[:, 0].min()), 4), round(float(a[:, 1].min()), 4))


def _refine_structure(st: Structure, sampler: ProfileSampler, s: ContourSettings,
                      known: dict[tuple, tuple[np.ndarray, np.ndarray]]) -> None:
    """Refine a structure's coarse contours. Pattern holes are recorded in `known`; a
    hole structure whose boundary is such a hole reuses it (reversed), so the hole and
    the pattern around it share one edge and their masks tile the image exactly."""
    polarity = -1 if st.label == labels.HOLE else 1
    for c in st.coarse:
        k = _key(c)
        if st.label == labels.HOLE and k in known:
            r, e = known[k]
            r, e = close_contour(open_contour(r)[::-1]), e[::-1]
        else:
            r, e = refine_contour(sampler, c, s, shape=sampler.shape, polarity=polarity)
            if st.label == labels.PATTERN and signed_area(c) < 0:
                known[k] = (r, e)
        st.contours.append(r)
        st.edge_strength.append(e)
    if st.contours:
        st.mask = _rasterize_local(st.contours, sampler.shape)


def extract_classical_contours(image: np.ndarray, settings: ContourSettings | None = None, *,
                               pixel_nm: float | None = None, source: str | None = None,
                               **overrides) -> ClassicalContours:
    """Denoise, threshold, split into structures and refine each structure's contours to
    sub-pixel precision (see the module docstring). `overrides` replace settings fields;
    `source` names the image in error messages. With `edge_scale="auto"` the profile
    lengths follow the measured edge width (`measure_edge_width`), so the same settings
    work at 256 px and at 512 px of the same field of view; the result records the
    width and the scale used."""
    from semlab.segment.base import check_image

    s = settings or ContourSettings()
    if overrides:
        s = replace(s, **overrides)
    img = check_image(image, min_side=s.min_side, source=source, backend="classical contour")
    if s.polarity == "dark":
        img = 1.0 - img
    den, t, bright = _segment(img, s, 1.0)
    width = float("nan")
    scale = 1.0
    if s.edge_scale == "auto":
        width = measure_edge_width(img, mask_contours(bright.astype(np.float32), 0.5))
        if np.isfinite(width):
            scale = float(np.clip(width / REFERENCE_EDGE_WIDTH_PX, 0.5, 4.0))
    else:
        scale = float(s.edge_scale)
    if abs(scale - 1.0) > 0.05:  # segment again with denoising and area limits at this scale
        den, t, bright = _segment(img, s, scale)
    h, w = img.shape
    structures: list[Structure] = []
    lab, n = ndi.label(bright)
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is not None:
            box = _crop_box(sl, (h, w))
            structures.append(_structure(len(structures) + 1, labels.PATTERN, lab[box] == i, box, (h, w)))
    if s.hole_structures:
        dark, nd = ndi.label(~bright)
        for j, sl in enumerate(ndi.find_objects(dark), start=1):
            if sl is None or sl[0].start == 0 or sl[1].start == 0 or sl[0].stop == h or sl[1].stop == w:
                continue  # touching the frame: background, not an enclosed hole
            box = _crop_box(sl, (h, w))
            structures.append(_structure(len(structures) + 1, labels.HOLE, dark[box] == j, box, (h, w)))
    sc = s.scaled(scale)
    src = den if s.denoise != "none" else img
    prof = ndi.gaussian_filter(src, sc.profile_sigma_px) if sc.profile_sigma_px > 0 else src
    sampler = ProfileSampler(prof)
    known: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
    for st in structures:  # patterns first: their holes are reused by the hole structures
        _refine_structure(st, sampler, sc, known)
    structures = _drop_weak(structures, s)
    smap = np.zeros((h, w), np.int32)
    mask = np.zeros((h, w), np.uint8)
    for st in structures:  # holes come after patterns, so they are painted last
        smap[st.mask] = st.id
        mask[st.mask] = st.label
    return ClassicalContours(structures, smap, mask, den, t, s, pixel_nm, edge_width_px=width, scale=scale)


# ------------------------------------------------------------------------- calibration


def calibrate_edge_offset(pairs: Iterable[tuple[np.ndarray, Sequence[np.ndarray]]],
                          settings: ContourSettings | None = None, *, spacing_px: float = 0.5,
                          frame_margin_px: float = 1.0, progress: bool = False) -> tuple[ContourSettings, dict]:
    """Fit `edge_offset_px` on training images with known edges.

    `pairs` yields (image, true contours in px) -- e.g. `(r.image, r.contours)` of
    simulated images. The extractor runs with the given settings but no offset and the
    signed EPE of every edge point is measured (+: outside the true pattern). The
    applied offset of image i is `edge_offset_px * scale_i` (see `ContourSettings.
    scaled`), so the least-squares offset is sum(e * s_i) / sum(s_i^2) over all
    points; with a fixed scale of 1 that is the mean signed EPE. Moving every point
    along its normal removes that bias to first order (curved edges change length a
    little with the offset). Returns (settings with the offset, info: per-image mean
    EPE and scale before calibration, the offset, point and image counts)."""
    from tqdm.auto import tqdm

    from semlab.contours.metrics import edge_placement_error

    base = replace(settings or ContourSettings(), edge_offset_px=0.0)
    per_image, scales = [], []
    num = den_ = 0.0
    count = 0
    for image, true in tqdm(pairs, disable=not progress, desc="calibrate edge offset"):
        img = np.asarray(image)
        res = extract_classical_contours(img, base)
        ee = edge_placement_error(res.contours, true, shape=img.shape, spacing_px=spacing_px,
                                  frame_margin_px=frame_margin_px)
        e = ee.epe[np.isfinite(ee.epe)]
        if e.size:
            per_image.append(float(e.mean()))
            scales.append(res.scale)
            num += float(e.sum()) * res.scale
            den_ += e.size * res.scale ** 2
            count += int(e.size)
    if count == 0:
        raise ValueError("calibrate_edge_offset: no edge points to compare (no images, or no edges found)")
    offset = num / den_
    info = {"edge_offset_px": offset, "per_image_mean_epe_px": per_image, "per_image_scale": scales,
            "n_points": count, "n_images": len(per_image)}
    return replace(base, edge_offset_px=float(offset)), info
