"""The classical segmenter: denoise, threshold, clean up, split into segments.

No weights, a few milliseconds to a few tenths of a second per image, and every step
is a scikit-image / scipy call with a named parameter:

0. **Illumination** (`flatten_degree`, default 2): uneven illumination (charging,
   shading) is removed first, a polynomial field fitted to both phases at once
   (`flatten_illumination`), so one global threshold holds across the frame.
1. **Denoise** (`denoise`): non-local means (`"nlm"`, default; h = strength x the
   noise sigma estimated on the image), bilateral, total variation, Gaussian or none.
   The strength (`denoise_strength`) defaults to None: picked per frame from its
   step-to-noise ratio (`auto_denoise_strength`: less for noisy frames, whose edges
   more smoothing blurs), so an uncalibrated frame of any noise level gets a
   suitable amount.
2. **Flatten** (`flatten_px`, optional): subtract a very smooth background (charging
   gradients) estimated by a Gaussian of that sigma.
3. **Threshold** (`threshold`): Otsu (global), multi-Otsu (three levels: the lowest
   level is dark, the upper two are bright), Li, or Sauvola (local, for uneven images).
4. **Edge offset** (`edge_offset_px`): SEM edges carry a bright rim and beam blur, so
   the threshold contour lies outside the physical edge. The bright phase is taken as
   `den - t > edge_offset_px * |grad den|`, which moves the contour inwards by that
   many pixels to first order, with sub-pixel resolution (`semlab.segment.evaluate.
   calibrate_on_dataset` fits it on a few labelled images). That is `edge_method=
   "threshold"`. The default, `"local"`, first puts the edges of each gradient direction
   at their own mid-level between the local maximum and minimum (`local_mid_edges`:
   edges with a brighter rim, e.g. those facing the scan, no longer shift lines
   sideways); with `"gradient"` (`particles_settings`) the edges are first moved to the
   steepest slope between the surely-bright and surely-dark pixels (`gradient_edges`).
   For both the offset then shifts those edges (`shift_edges`).
5. **Morphology**: components and holes smaller than `min_area_px` are removed /
   filled; `open_px` optionally opens the bright phase; `fill_holes_px` fills larger
   dark holes (the dark core of a rim-and-core particle).
6. **Segments**: the connected components of the bright phase (optionally split by a
   distance-transform watershed, `watershed=True`, when structures touch) and of
   the dark phase, plus particles (`blobs=True`, see below). Rules in
   `semlab.segment.canonical` turn segments into canonical classes, exactly as for
   SAM2's masks.

**Particles** (`blob_method="dynamic"`, the default; `detect_particles`). A particle
is a compact blob that stands out from *everything it is connected to*, small
relative to the field and not following the pattern's Manhattan geometry. A disk
top-hat (the former method, `blob_method="tophat"`) cannot tell that apart from a
bright edge rim or a narrow line, both of which are narrower than the disk, and it
merges a particle lying on a line with the line's rims. Instead:

- the *dynamic map* (`particle_contrast_map`) is the lightly smoothed image minus its
  area opening: each pixel's height above the level at which its bright connected
  region grows larger than a particle can be. Lines and the rims along their edges
  are connected over long distances, so they vanish; a particle keeps its height
  above whatever it sits on (background, the top of a line, or the rim it touches);
- a candidate's dynamic must reach `blob_contrast` x (pattern level - background
  level); its extent is the region above `blob_level` (half) of its peak dynamic,
  which must be compact (`blob_min_axis_ratio`, `blob_min_solidity`), at least
  `blob_min_radius_px` and at most `blob_max_radius_px` in equivalent radius (with
  one pixel of blur allowed) and not cut by the frame. Short bright bumps on a rim
  (line-edge roughness, a necking line, corners) are smaller or elongated and fail;
- `blob_shape="disc"` draws the particle as the disc of the same area centred on the
  dynamic-weighted centroid, shrunk by `blob_edge_offset_px`. At a few pixels across
  a disc is the most one can say about a particle's shape, and it is less noisy than
  the raw region (`blob_shape="region"`). Blur and a bright particle edge could put
  the half-height contour outside the physical edge, as for the structures; on
  simulated `ic-metal` data the best offset on the train split was ~0 (the half
  height is taken above what the particle sits on, not above the background), so
  it defaults to 0; fit it on labelled data, like `edge_offset_px`, for other data.

`particle_settings(pixel_size_nm, radius_nm)` turns the physical size range of the
particles one looks for into the pixel settings.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi

from semlab.segment.base import Segment, check_image

DENOISERS = ("nlm", "bilateral", "tv", "gaussian", "none")
THRESHOLDS = ("otsu", "multiotsu", "li", "sauvola")
BLOB_METHODS = ("dynamic", "tophat")
BLOB_SHAPES = ("disc", "region")
EDGE_METHODS = ("gradient", "threshold", "local")


@dataclass
class ClassicalSettings:
    denoise: str = "nlm"
    # x estimated noise sigma (nlm h, bilateral colour sigma); None: from the frame's own
    # step-to-noise ratio (`auto_denoise_strength`)
    denoise_strength: float | None = None
    smooth_px: float = 1.0  # Gaussian sigma for denoise="gaussian"; TV weight scale for "tv"
    flatten_px: float = 0.0  # > 0: subtract a Gaussian background of this sigma first
    flatten_degree: int = 2  # > 0: remove uneven illumination, a polynomial of this degree (`flatten_illumination`)
    fill_holes_px: int = 0  # > 0: fill dark holes of the bright phase up to this area (rim-and-core particles)
    threshold: str = "otsu"
    sauvola_window: int = 51
    edge_offset_px: float = 0.0  # move pattern edges inwards (sub-pixel; see step 4 above)
    # "local" (default): each edge direction at its own mid-level (`local_mid_edges`);
    # "threshold": edges at the threshold contour; "gradient": at the steepest slope between
    # confident phases (`gradient_edges`; `particles_settings` uses it: rim-and-core particles)
    edge_method: str = "local"
    edge_marker_frac: float = 0.25  # confident phases: beyond t +- this x the level gap
    edge_smooth_px: float = 0.7  # Gaussian sigma before the gradient of `gradient_edges`
    edge_local_px: int = 0  # edge_method="local": max / min window radius (`local_mid_edges`; 0: from the edge width)
    edge_local_sectors: int = 8  # edge_method="local": gradient-direction sectors, each with its own level
    min_area_px: int = 12
    open_px: int = 0
    watershed: bool = False
    watershed_min_distance: int = 4
    watershed_h: float = 0.0  # > 0: markers are the h-maxima of the distance map (touching particles)
    blobs: bool = True
    blob_max_radius_px: float = 4.0  # largest particle (equivalent radius, px); `particle_settings`
    blob_min_area_px: int = 4
    blob_contrast: float = 0.7  # x (bright level - dark level) above the local surroundings
    blob_edge_band_px: float = 0.0  # > 0: drop candidates lying mostly this close to a structure edge
    min_side: int = 16
    # particles, blob_method="dynamic" (see the module docstring); "tophat" is the former detector
    # (whose defaults were blob_max_radius_px=6, blob_contrast=0.5)
    blob_method: str = "dynamic"
    blob_min_radius_px: float = 1.5  # smallest half-height region worth reporting (equivalent radius, px)
    blob_smooth_px: float = 0.7  # Gaussian sigma before the dynamic map (noise peaks on rims)
    blob_area_factor: float = 2.0  # the area opening removes regions < this x pi blob_max_radius_px^2
    blob_level: float = 0.5  # the particle extends down to this fraction of its peak dynamic
    blob_min_axis_ratio: float = 0.6  # minor / major axis: rims and line pieces are elongated
    blob_min_solidity: float = 0.8  # area / convex area: corners and junctions are not convex
    blob_shape: str = "disc"  # "disc": equal-area disc; "region": the thresholded region itself
    blob_edge_offset_px: float = 0.0  # move particle edges inwards (sub-pixel), like edge_offset_px

    def __post_init__(self):
        if self.denoise not in DENOISERS:
            raise ValueError(f"denoise {self.denoise!r}; valid: {DENOISERS}")
        if self.threshold not in THRESHOLDS:
            raise ValueError(f"threshold {self.threshold!r}; valid: {THRESHOLDS}")
        if self.blob_method not in BLOB_METHODS:
            raise ValueError(f"blob_method {self.blob_method!r}; valid: {BLOB_METHODS}")
        if self.edge_method not in EDGE_METHODS:
            raise ValueError(f"edge_method {self.edge_method!r}; valid: {EDGE_METHODS}")
        if self.edge_local_px < 0 or self.edge_local_sectors < 1:
            raise ValueError(f"edge_local_px must be >= 0 (0: from the edge width) and edge_local_sectors >= 1, "
                             f"got {self.edge_local_px}, {self.edge_local_sectors}")
        if not 0 < self.edge_marker_frac < 0.5:
            raise ValueError(f"edge_marker_frac must be in (0, 0.5), got {self.edge_marker_frac}")
        if self.blob_shape not in BLOB_SHAPES:
            raise ValueError(f"blob_shape {self.blob_shape!r}; valid: {BLOB_SHAPES}")
        if not 0 < self.blob_level < 1:
            raise ValueError(f"blob_level must be in (0, 1), got {self.blob_level}")
        if self.denoise_strength is not None and not self.denoise_strength > 0:
            raise ValueError(f"denoise_strength must be > 0 or None (from the noise level), got {self.denoise_strength}")
        if not 0 <= int(self.flatten_degree) <= 4:
            raise ValueError(f"flatten_degree must be 0 (off) to 4, got {self.flatten_degree}")
        if self.blob_max_radius_px < self.blob_min_radius_px:
            raise ValueError(f"blob_max_radius_px ({self.blob_max_radius_px}) is below "
                             f"blob_min_radius_px ({self.blob_min_radius_px})")

    def describe(self) -> dict:
        return {"backend": "classical", **asdict(self)}


def denoise(image: np.ndarray, method: str = "nlm", strength: float = 0.8, smooth_px: float = 1.0,
            sigma: float | None = None) -> np.ndarray:
    """Denoise a float image in [0, 1]; the strength scales the noise sigma (`sigma`, or
    estimated from the image: `white_noise_sigma`)."""
    from skimage import filters, restoration

    img = image.astype(np.float32, copy=False)
    if method == "none":
        return img
    if method == "gaussian":
        return filters.gaussian(img, smooth_px).astype(np.float32)
    sigma = max(float(white_noise_sigma(img) if sigma is None else sigma), 1e-4)
    if method == "nlm":
        return restoration.denoise_nl_means(img, h=strength * sigma, sigma=sigma, patch_size=5,
                                           patch_distance=5, fast_mode=True).astype(np.float32)
    if method == "bilateral":
        return restoration.denoise_bilateral(img, sigma_color=2.5 * strength * sigma,
                                             sigma_spatial=1.5 * smooth_px).astype(np.float32)
    if method == "tv":
        return restoration.denoise_tv_chambolle(img, weight=strength * sigma * smooth_px).astype(np.float32)
    raise ValueError(f"denoise {method!r}; valid: {DENOISERS}")


def white_noise_sigma(img: np.ndarray) -> float:
    """A fast estimate of the per-pixel white-noise sigma (`semlab.noise.immerkaer_sigma`:
    the MAD of Immerkaer's second-difference response, which removes locally linear
    structure, scaled to a Gaussian's sigma). Reads the white part of the noise only."""
    from semlab.noise import immerkaer_sigma

    return immerkaer_sigma(img)


def step_to_noise(img: np.ndarray, sigma: float | None = None) -> float:
    """The frame's step-to-noise ratio: the gap between the medians of the two Otsu
    phases of the lightly smoothed image over the noise sigma (`white_noise_sigma`
    unless given)."""
    from skimage import filters

    sm = ndi.gaussian_filter(img.astype(np.float32), 1.5)[::2, ::2]
    t = float(filters.threshold_otsu(sm))
    hi, lo = sm[sm > t], sm[sm <= t]
    if not len(hi) or not len(lo):
        return float("inf")
    sigma = max(white_noise_sigma(img) if sigma is None else sigma, 1e-4)
    return float(np.median(hi) - np.median(lo)) / sigma


def auto_denoise_strength(snr: float) -> float:
    """Denoising strength (x the noise sigma, which the denoiser estimates per frame)
    from the frame's step-to-noise ratio: 0.8 (the value tuned on simulated frames) at a
    ratio of 6 or more, falling linearly to 0.5 at a ratio of 2 or less. Measured on 30
    simulated 128-px frames (ic-metal, line-space, contacts; pattern IoU at strengths
    0.5/0.8/1.1/1.5): the noisiest half scored 0.905/0.894/0.880/0.868 and the cleaner
    half 0.860/0.857/0.851/0.842, so a noisy frame wants *less* non-local smoothing
    relative to its noise (more blurs its edges), not more."""
    if not math.isfinite(snr) or snr <= 0:
        return 0.8
    return float(min(max(0.5 + 0.3 * (snr - 2.0) / 4.0, 0.5), 0.8))


def flatten_illumination(img: np.ndarray, degree: int = 2, step: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Remove uneven illumination (charging, detector shading): fit, by least squares on
    every `step`-th pixel away from the phase edges, one smooth polynomial field shared
    by both phases plus a step between them (Otsu phases, refitted after each
    flattening), and subtract the field. Returns (flattened image, the zero-mean field
    removed). Structures do not bias the field: their step is fitted.
    The degrees 1 to `degree` are fitted in turn, each starting from the phases the
    previous one left, and the field that separates the two phases best (Otsu's
    criterion of the smoothed image) is kept, or none if none beats the image as it
    is (on 96-px line-space frames an ill-posed fit had cut pattern IoU from 0.93 to
    0.45). Fitted at once, a degree-2 field can take a bright charging corner for a
    phase and leave it in (a simulated `particles` frame: pattern IoU 0.37; degree 1
    first, then 2: 0.83)."""
    from skimage import filters

    h, w = img.shape
    x = img.astype(np.float32)
    sm = ndi.gaussian_filter(x, 1.5)
    yy, xx = np.mgrid[0:h:step, 0:w:step].astype(np.float64)
    yy, xx = yy / max(h - 1, 1) * 2 - 1, xx / max(w - 1, 1) * 2 - 1
    sub = sm[::step, ::step].astype(np.float64)
    gy = np.linspace(-1, 1, h) if h > 1 else np.zeros(1)
    gx = np.linspace(-1, 1, w) if w > 1 else np.zeros(1)
    sm2 = sm[::2, ::2]
    best, best_sep = None, _otsu_separation(sm2, stride=1)
    field = np.zeros_like(sub)
    for d in range(1, int(degree) + 1):
        powers = [(i, j) for i in range(d + 1) for j in range(d + 1 - i) if i + j > 0]
        terms = np.stack([(yy ** i * xx ** j).ravel() for i, j in powers], 1)
        for _ in range(2):
            flat = sub - field
            phase = flat > filters.threshold_otsu(flat)
            keep = (ndi.binary_erosion(phase, iterations=1) | ~ndi.binary_dilation(phase, iterations=1)).ravel()
            a = np.column_stack([terms, np.ones(len(terms)), phase.ravel()])[keep]
            coef = _lstsq(a, sub.ravel()[keep])
            field = (terms @ coef[:len(powers)]).reshape(sub.shape)
        f2 = _poly_field(coef, powers, gy[::2], gx[::2])
        # a field fitted on too few phase pixels (small frames, thin lines: the subsampled
        # phases erode away) can be wild: kept only if the phases separate better
        sep = _otsu_separation(sm2 - f2, stride=1)  # the field is smooth: blur(x - f) ~ blur(x) - f
        if sep > best_sep:
            best, best_sep = (coef[:len(powers)].copy(), powers), sep
    if best is None:
        return x, np.zeros_like(x)
    full = _poly_field(*best, gy, gx)
    full -= full.mean()
    return (x - full).astype(np.float32), full.astype(np.float32)


def _lstsq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Least squares by the normal equations (a few columns, many rows: ~10x faster than
    `np.linalg.lstsq`), falling back to it if they are singular."""
    try:
        return np.linalg.solve(a.T @ a, a.T @ b)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(a, b, rcond=None)[0]


def _poly_field(coef, powers, gy: np.ndarray, gx: np.ndarray) -> np.ndarray:
    """sum_k coef[k] gy^i gx^j over `powers` [(i, j)], as one separable matrix product."""
    d = max(max(i, j) for i, j in powers)
    c = np.zeros((d + 1, d + 1))
    for k, (i, j) in enumerate(powers):
        c[i, j] = coef[k]
    return np.vander(gy, d + 1, increasing=True) @ c @ np.vander(gx, d + 1, increasing=True).T


def _otsu_separation(img: np.ndarray, stride: int = 2) -> float:
    """Otsu's criterion: between-class variance over total variance at the Otsu
    threshold (1: two perfectly separated levels, 0: no separation)."""
    from skimage import filters

    v = img[::stride, ::stride].astype(np.float64).ravel()
    var = float(v.var())
    if var <= 0:
        return 0.0
    hi = v > filters.threshold_otsu(v)
    w = float(hi.mean())
    if w in (0.0, 1.0):
        return 0.0
    return w * (1 - w) * (float(v[hi].mean()) - float(v[~hi].mean())) ** 2 / var


def bright_phase(den: np.ndarray, s: ClassicalSettings) -> tuple[np.ndarray, float | np.ndarray]:
    """Boolean bright phase and the threshold used (a number, or an image for Sauvola)."""
    from skimage import filters

    if s.threshold == "otsu":
        t = float(filters.threshold_otsu(den))
    elif s.threshold == "li":
        t = float(filters.threshold_li(den))
    elif s.threshold == "multiotsu":
        t = float(filters.threshold_multiotsu(den, classes=3)[0])
    else:
        w = int(s.sauvola_window) | 1
        t = filters.threshold_sauvola(den, window_size=w)
    return den > t, t


def gradient_edges(den: np.ndarray, bright: np.ndarray, t, frac: float = 0.25, smooth_px: float = 0.7) -> np.ndarray:
    """The bright phase with its edges moved to the steepest slope: pixels above
    t + `frac` x gap are surely bright and those below t - `frac` x gap surely dark
    (gap: `level_gap`); the uncertain band between them goes to whichever side a
    watershed of the gradient magnitude (Sobel of the lightly smoothed image) floods
    from. A blurred step's steepest slope is its physical edge, whatever the levels on
    either side; a global threshold is not: a bright rim, blurred outwards, pulls the
    threshold contour outside the edge (rim-and-core particles came out ~20% too large),
    and a threshold set by a big phase misplaces the edges of a small one. Components
    of `bright` with no sure-bright pixel (faint small particles) keep their
    threshold extent."""
    from skimage import filters, segmentation

    gap = level_gap(den, bright)
    sure_hi = den > t + frac * gap
    sure_lo = den < t - frac * gap
    markers = np.zeros(den.shape, np.int32)
    markers[sure_lo] = 1
    markers[sure_hi] = 2
    band = markers == 0
    if not band.any() or not sure_hi.any() or not sure_lo.any():
        return bright
    grad = filters.sobel(ndi.gaussian_filter(den.astype(np.float32), smooth_px))
    ws = segmentation.watershed(grad, markers, mask=ndi.binary_dilation(band) | (markers > 0))
    out = ws == 2
    lab, n = ndi.label(bright)
    if n:
        has = np.zeros(n + 1, bool)
        has[np.unique(lab[sure_hi])] = True
        has[0] = True
        out |= ~has[lab]
    return out


def local_mid_edges(den: np.ndarray, bright: np.ndarray, t, frac: float = 0.25, radius_px: int = 0,
                    sectors: int = 8, min_px: int = 50) -> np.ndarray:
    """The bright phase with the edges of each direction at their own mid-level.

    A global threshold sits at the same level on every edge, so edges with a brighter
    rim (the edges facing the scan: `scan_asymmetry` in the simulator, seen on the real
    Hitachi line frames) come out further outwards than the opposite ones, and lines
    shift sideways, which no global edge offset can undo. Here the pixels of the
    uncertain band (within `frac` x gap of `t`; gap: `level_gap`) are grouped by the
    direction of their gradient into `sectors` sectors; each sector's level is the
    median over its band pixels of (local max + local min) / 2 in a square window of
    radius `radius_px` (the 50% max-min edge of CD-SEM metrology, Bernsen's rule), and
    the band pixels are bright above their sector's level. The median over thousands
    of pixels keeps the edges as smooth as the global threshold's (a per-pixel max-min
    level roughened them: line-space IoU 0.949 -> 0.945). `radius_px` 0 (default):
    from the edge width, ceil(gap / 90th percentile of the band's slope), clipped to
    2-8 px, so the window spans the edge on blurred or downscaled frames (a fixed 2 px
    put the edges of the block-averaged litho frames 0.9 px off the slope maximum).
    A sector with fewer than `min_px` band pixels keeps the global threshold; a local
    threshold `t` (Sauvola) is left as it is. Measured (simulated 256-px frames, no edge
    offset; /tmp/p8/h9/lsb.py): line-space 0.949 -> 0.954 structure IoU (sideways shift
    0.30 -> 0.25 px), contacts 0.953 -> 0.955, ic-metal 1.000 -> 1.000."""
    if not np.isscalar(t):
        return bright
    gap = level_gap(den, bright)
    band = np.abs(den - t) < frac * gap
    if band.sum() < min_px:
        return bright
    g = ndi.gaussian_filter(den.astype(np.float32), 0.7)
    gy, gx = ndi.sobel(g, 0) / 8.0, ndi.sobel(g, 1) / 8.0
    if radius_px <= 0:
        slope = float(np.percentile(np.hypot(gy[band], gx[band]), 90))
        radius_px = int(np.clip(math.ceil(gap / max(slope, 1e-9)), 2, 8))
    size = 2 * int(radius_px) + 1  # square window: separable, fast
    mid = 0.5 * (ndi.maximum_filter(den, size=size) + ndi.minimum_filter(den, size=size))[band]
    ang = np.arctan2(gy[band], gx[band])
    sec = np.floor((ang + np.pi) / (2 * np.pi) * sectors + 0.5).astype(np.int64) % max(int(sectors), 1)
    lev = np.full(mid.shape, float(t), np.float32)
    for k in range(max(int(sectors), 1)):
        sel = sec == k
        if sel.sum() >= min_px:
            lev[sel] = float(np.median(mid[sel]))
    out = bright.copy()
    out[band] = den[band] > lev
    return out


def shift_edges(bright: np.ndarray, offset_px: float, sigma: float = 1.0) -> np.ndarray:
    """Move the edges of a binary phase `offset_px` inwards (negative: outwards): the
    phase smoothed by a Gaussian of `sigma` crosses Phi(d / sigma) at a distance d
    inside a straight edge, so thresholding it there shifts the edge by d."""
    from scipy.special import ndtr

    m = ndi.gaussian_filter(bright.astype(np.float32), sigma)
    return m > float(ndtr(offset_px / sigma))


def _clean(bright: np.ndarray, min_area: int, open_px: int, fill_px: int = 0) -> np.ndarray:
    from skimage import morphology

    if open_px > 0:
        bright = morphology.binary_opening(bright, morphology.disk(open_px))
    if min_area > 1:
        bright = morphology.remove_small_objects(bright, max_size=min_area - 1)
    if max(min_area - 1, fill_px) > 0:
        bright = ~morphology.remove_small_objects(~bright, max_size=max(min_area - 1, fill_px))
    return bright


def _drop_particle_islands(bright: np.ndarray, particles: list[Segment], s: ClassicalSettings) -> np.ndarray:
    """A particle lying on the background is also a small island of the bright phase,
    a little larger than the particle drawn on top of it; the leftover rim would
    become a ring of 'pattern'. Islands that a particle overlaps and that are no
    larger than a few particles go to the dark phase (the particle segment covers them)."""
    if not particles:
        return bright
    lab, n = ndi.label(bright)
    if n == 0:
        return bright
    hit = np.unique(np.concatenate([lab[p.mask] for p in particles]))
    hit = hit[hit > 0]
    if not len(hit):
        return bright
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    limit = 4 * math.pi * (s.blob_max_radius_px + 1.0) ** 2
    drop = hit[sizes[hit] <= limit]
    if not len(drop):
        return bright
    return bright & ~np.isin(lab, drop)


def _components(phase: np.ndarray, tag: str) -> list[Segment]:
    lab, n = ndi.label(phase)
    out = []
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None:
            continue
        m = lab == i
        out.append(Segment(m, source=tag))
    return out


def _watershed_split(bright: np.ndarray, min_distance: int, h: float = 0.0) -> list[Segment]:
    """Split touching structures: a watershed of the distance map from its peaks (at
    least `min_distance` apart) or, with `h` > 0, from its h-maxima (a peak must rise h
    px above the neck joining it to a larger one: a shallow bump on one particle is not
    a second particle, a small particle beside a big one is)."""
    from skimage.feature import peak_local_max
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    dist = ndi.distance_transform_edt(bright)
    if h > 0:
        markers, _ = ndi.label(h_maxima(ndi.gaussian_filter(dist, 0.5), h), structure=np.ones((3, 3)))
        markers = markers.astype(np.int32)
    else:
        lab_cc, _ = ndi.label(bright)
        peaks = peak_local_max(dist, min_distance=max(int(min_distance), 1), labels=lab_cc, exclude_border=False)
        markers = np.zeros(bright.shape, np.int32)
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    lab = watershed(-dist, markers, mask=bright)
    # components without a marker keep their own label
    rest = bright & (lab == 0)
    if rest.any():
        extra, n = ndi.label(rest)
        lab = np.where(rest, extra + lab.max(), lab)
    return [Segment(lab == i, source="classical:bright-ws") for i in np.unique(lab) if i != 0]


def _blobs(den: np.ndarray, bright: np.ndarray, s: ClassicalSettings) -> list[Segment]:
    """Small compact regions much brighter than their surroundings (particles).

    White top-hat with a disk larger than the biggest particle; keep components that
    rise above the local surroundings by `blob_contrast` x the bright-dark level gap,
    are at most `blob_max_radius_px` in extent and compact (not a bright edge rim,
    which is long and thin)."""
    from skimage import measure, morphology

    r = max(int(math.ceil(s.blob_max_radius_px)) + 1, 2)
    lo = float(np.median(den[~bright])) if (~bright).any() else float(den.min())
    hi = float(np.median(den[bright])) if bright.any() else float(den.max())
    gap = max(hi - lo, 1e-3)
    th = morphology.white_tophat(den, morphology.disk(r))
    cand = th > s.blob_contrast * gap
    # bright edge rims look like blobs too: ignore candidates lying along the boundaries
    # of the large structures (components smaller than a particle do not count)
    big_area = int(math.pi * s.blob_max_radius_px ** 2)
    big = morphology.remove_small_objects(bright, max_size=big_area)
    big = ~morphology.remove_small_objects(~big, max_size=big_area)
    bw = max(int(round(s.blob_edge_band_px)), 1)
    band = ndi.binary_dilation(big, iterations=bw) & ~ndi.binary_erosion(big, iterations=bw, border_value=1)
    lab, n = ndi.label(cand)
    out = []
    if n == 0:
        return out
    for p in measure.regionprops(lab, intensity_image=th):
        if p.area < s.blob_min_area_px:
            continue
        if p.axis_major_length > 2.2 * s.blob_max_radius_px or p.solidity < 0.8:
            continue
        if p.axis_minor_length < 0.5 * p.axis_major_length:  # elongated: an edge rim
            continue
        if p.euler_number < 1:  # a ring (the bright rim around a contact hole)
            continue
        m = lab == p.label
        if s.blob_edge_band_px > 0 and band[m].mean() > 0.5:
            continue
        # the particle is the half-maximum region of its top-hat peak
        peak = float(p.intensity_max)
        sl = tuple(slice(max(a - 2, 0), b + 2) for a, b in zip(p.bbox[:2], p.bbox[2:]))
        sub = th[sl] > 0.5 * peak
        sub_lab, _ = ndi.label(sub)
        ids = np.unique(sub_lab[m[sl] & sub])
        ids = ids[ids > 0]
        full = np.zeros(den.shape, bool)
        full[sl] = np.isin(sub_lab, ids)
        out.append(Segment(full, score=float(min(peak / gap, 10.0)), source="classical:blob",
                           info={"peak_over_gap": round(peak / gap, 3)}))
    return out


def particle_settings(pixel_size_nm: float, radius_nm: tuple[float, float] = (3.0, 8.0)) -> dict:
    """Particle-size settings (px) for particles of `radius_nm` (smallest, largest) seen
    at `pixel_size_nm`: the physical size one looks for, converted to the image.

    - `blob_max_radius_px` = the largest radius, but at least 3 px: below that the area
      opening (2 pi r^2) is too small to tell a particle from the blur and the rims
      around it;
    - `blob_min_radius_px` = the smallest radius + 0.5 px (the half-height region of a
      blurred particle is about half a pixel wider than the particle), at least 1.25 px:
      smaller bright spots are as often noise on an edge rim as particles.
    The floors were chosen on the train/val splits of simulated `ic-metal` data at 128
    and 256 px (tools/measure_segmentation.py); `ClassicalSettings(**particle_settings(...))`.
    """
    if not pixel_size_nm or pixel_size_nm <= 0:
        raise ValueError(f"pixel_size_nm must be > 0, got {pixel_size_nm!r}")
    lo, hi = (float(v) for v in radius_nm)
    if not 0 < lo <= hi:
        raise ValueError(f"radius_nm must be (smallest, largest) with 0 < smallest <= largest, got {radius_nm!r}")
    rmax = max(hi / pixel_size_nm, 3.0)
    rmin = min(max(lo / pixel_size_nm + 0.5, 1.25), rmax)
    return {"blob_min_radius_px": round(rmin, 3), "blob_max_radius_px": round(rmax, 3)}


def particles_settings(pixel_size_nm: float, radius_nm: tuple[float, float] = (2.0, 12.0),
                       debris_radius_nm: tuple[float, float] = (2.0, 4.0)) -> dict:
    """Classical settings for particles as the *pattern* (the `particles` preset, or real
    particles on a substrate) seen at `pixel_size_nm`: touching particles split by a
    watershed from the h-maxima of the distance map, the dark core of a rim-and-core
    particle filled (holes up to the largest particle's area), and the particle
    detector kept for debris (`debris_radius_nm`, which must also be brighter than the
    particles: pair with `CanonicalRules(defect_above_pattern=...)`), and edges at the
    steepest slope (`edge_method="gradient"`): the bright rim of a rim-and-core particle,
    blurred outwards, puts the threshold contour outside its edge (on 6 simulated
    `particles` frames, 256 px: rim particles 1.23x their true area with the threshold,
    1.13x with gradient edges; pattern IoU 0.831 -> 0.867, object F1 0.898 -> 0.916). On
    contact holes, whose soft noisy edges make the slope poorly placed, it lost 0.014
    structure IoU, so it is not the default. The watershed's h (0.4 px, was 0.7): a small
    particle touching a large one was left merged with it (86 of the 2-5 px particles
    in touching pairs on 40 train frames); on the val split (32 frames) object F1 0.901
    -> 0.909 at the same pixel IoU."""
    rmax = max(radius_nm) / pixel_size_nm
    return {"watershed": True, "watershed_h": 0.4, "fill_holes_px": int(math.pi * rmax ** 2), "edge_method": "gradient",
            **particle_settings(pixel_size_nm, debris_radius_nm)}


def level_gap(den: np.ndarray, bright: np.ndarray) -> float:
    """Pattern level minus background level (medians of the two phases): the unit in
    which particle contrasts are given, so thresholds do not depend on gain."""
    lo = float(np.median(den[~bright])) if (~bright).any() else float(den.min())
    hi = float(np.median(den[bright])) if bright.any() else float(den.max())
    return max(hi - lo, 1e-3)


def particle_contrast_map(den: np.ndarray, max_area_px: int, smooth_px: float = 0.7) -> np.ndarray:
    """Height of each pixel above the level at which its bright connected region grows
    to `max_area_px` pixels or more (the image minus its area opening: a dynamic, or
    area top-hat).

    Anything brighter than its surroundings but smaller than `max_area_px` keeps its
    height above those surroundings, whatever they are; lines and edge rims, connected
    over long distances, drop to ~0 (apart from bumps on them). The image is mirrored
    at the frame first, so a line leaving the field is not mistaken for a small region."""
    from skimage import morphology

    x = ndi.gaussian_filter(den.astype(np.float32), smooth_px) if smooth_px > 0 else den.astype(np.float32)
    a = max(int(max_area_px), 2)
    pad = min(int(math.ceil(math.sqrt(a))) + 2, min(x.shape) - 1)
    xp = np.pad(x, pad, mode="reflect")
    out = xp - morphology.area_opening(xp, area_threshold=a)
    return out[pad:xp.shape[0] - pad, pad:xp.shape[1] - pad]


def particle_dynamic(den: np.ndarray, s: ClassicalSettings) -> np.ndarray:
    """The dynamic map `detect_particles` uses, for settings `s` (depends only on the
    prepared image and the particle size settings)."""
    rmax = float(s.blob_max_radius_px)
    return particle_contrast_map(den, int(round(s.blob_area_factor * math.pi * rmax ** 2)), s.blob_smooth_px)


def detect_particles(den: np.ndarray, bright: np.ndarray, s: ClassicalSettings,
                     dyn: np.ndarray | None = None) -> list[Segment]:
    """Particles: compact blobs that stand out from everything they touch (see the
    module docstring). `den` is the prepared image, `bright` the cleaned bright phase
    (for the pattern - background level gap). Each segment's info records the
    contrast (peak dynamic / gap), the equivalent radius and the centre. `dyn`: the
    dynamic map already computed (`particle_dynamic`; calibration reuses it)."""
    from skimage import measure

    h, w = den.shape
    gap = level_gap(den, bright)
    rmax = float(s.blob_max_radius_px)
    if dyn is None:
        dyn = particle_dynamic(den, s)
    cand = dyn > s.blob_contrast * gap
    lab, n = ndi.label(cand)
    if n == 0:
        return []
    # half-height regions may be up to ~1 px (blur) wider than the particle itself
    a_min = max(float(s.blob_min_area_px), math.pi * s.blob_min_radius_px ** 2)
    a_max = math.pi * (rmax + 1.0) ** 2
    half = int(math.ceil(2 * rmax)) + 3
    out: list[Segment] = []
    taken = np.zeros((h, w), bool)
    peaks = ndi.maximum_position(dyn, lab, np.arange(1, n + 1))
    for (py, px) in sorted(peaks, key=lambda q: -dyn[q]):
        if taken[py, px]:
            continue
        peak = float(dyn[py, px])
        y0, y1 = max(py - half, 0), min(py + half + 1, h)
        x0, x1 = max(px - half, 0), min(px + half + 1, w)
        sub = dyn[y0:y1, x0:x1]
        above = sub > s.blob_level * peak
        reg_lab, _ = ndi.label(above)
        reg = reg_lab == reg_lab[py - y0, px - x0]
        # reaching the window edge: larger than any particle; reaching the frame: cut off
        if reg[0].any() or reg[-1].any() or reg[:, 0].any() or reg[:, -1].any():
            continue
        area = int(reg.sum())
        if not a_min <= area <= a_max:
            continue
        rp = measure.regionprops(reg.astype(np.uint8))[0]
        if rp.axis_minor_length < s.blob_min_axis_ratio * rp.axis_major_length:
            continue  # elongated: a piece of rim or line
        if rp.solidity < s.blob_min_solidity:
            continue  # not convex: a corner or a junction of rims
        if s.blob_edge_band_px > 0 and _in_edge_band(bright, reg, (y0, x0), s):
            continue
        wts = sub[reg] - s.blob_level * peak
        ry, rx = np.nonzero(reg)
        cy = y0 + float((ry * wts).sum() / wts.sum())
        cx = x0 + float((rx * wts).sum() / wts.sum())
        radius = math.sqrt(area / math.pi) - s.blob_edge_offset_px
        full = np.zeros((h, w), bool)
        if s.blob_shape == "disc":
            r = max(radius, 0.5)
            yy = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
            xx = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
            full[y0:y1, x0:x1] = yy * yy + xx * xx <= r * r
            if not full.any():
                full[int(round(cy)), int(round(cx))] = True
        else:
            m = reg
            if s.blob_edge_offset_px:
                gy, gx = np.gradient(sub)
                m = reg & (sub - s.blob_level * peak > s.blob_edge_offset_px * np.hypot(gy, gx))
                if not m.any():
                    m = reg & (sub >= peak)
            full[y0:y1, x0:x1] = m
        taken[y0:y1, x0:x1] |= reg
        out.append(Segment(full, score=float(min(peak / gap, 10.0)), source="classical:particle",
                           info={"contrast": round(peak / gap, 3), "radius_px": round(radius, 3),
                                 "center": (round(cy, 2), round(cx, 2)), "area_px": area,
                                 "axis_ratio": round(float(rp.axis_minor_length / max(rp.axis_major_length, 1e-6)), 3),
                                 "solidity": round(float(rp.solidity), 3)}))
    return out


def _in_edge_band(bright: np.ndarray, reg: np.ndarray, origin: tuple[int, int], s: ClassicalSettings) -> bool:
    """True if most of a candidate region lies within `blob_edge_band_px` of the
    boundary of a structure larger than a particle (where rims and line-edge roughness
    make bright bumps)."""
    from skimage import morphology

    big_area = int(4 * math.pi * s.blob_max_radius_px ** 2)
    big = morphology.remove_small_objects(bright, max_size=big_area)
    big = ~morphology.remove_small_objects(~big, max_size=big_area)
    bw = max(int(round(s.blob_edge_band_px)), 1)
    band = ndi.binary_dilation(big, iterations=bw) & ~ndi.binary_erosion(big, iterations=bw, border_value=1)
    y0, x0 = origin
    return bool(band[y0:y0 + reg.shape[0], x0:x0 + reg.shape[1]][reg].mean() > 0.5)


class ClassicalSegmenter:
    """Denoise, threshold, morphology, components (see the module docstring)."""

    name = "classical"

    def __init__(self, settings: ClassicalSettings | None = None, **kw):
        self.settings = settings or ClassicalSettings(**kw)

    def describe(self) -> dict:
        return self.settings.describe()

    def prepare(self, image: np.ndarray, source: str | None = None) -> np.ndarray:
        """Validated, denoised (and optionally flattened) image."""
        s = self.settings
        img = check_image(image, min_side=s.min_side, source=source, backend="classical")
        if s.flatten_degree > 0:
            img = flatten_illumination(img, int(s.flatten_degree))[0]
        strength, sigma = s.denoise_strength, None
        if s.denoise in ("nlm", "bilateral", "tv"):
            sigma = white_noise_sigma(img)  # once per frame: for the strength and for the denoiser
            if strength is None:
                strength = auto_denoise_strength(step_to_noise(img, sigma))
        den = denoise(img, s.denoise, 0.8 if strength is None else strength, s.smooth_px, sigma=sigma)
        if s.flatten_px > 0:
            bg = ndi.gaussian_filter(den, s.flatten_px, mode="reflect")
            den = den - bg + float(bg.mean())
        return den

    def segment(self, image: np.ndarray, source: str | None = None) -> list[Segment]:
        return self.segment_prepared(self.prepare(image, source))

    def segment_prepared(self, den: np.ndarray, edge_offset_px: float | None = None,
                         dyn: np.ndarray | None = None) -> list[Segment]:
        """Segments of an already `prepare`d image (calibration reuses one denoising for
        many edge offsets, and `dyn`, the `particle_dynamic` map, for many settings)."""
        s = self.settings
        off = s.edge_offset_px if edge_offset_px is None else edge_offset_px
        bright, t = bright_phase(den, s)
        if s.edge_method == "gradient":
            bright = gradient_edges(den, bright, t, s.edge_marker_frac, s.edge_smooth_px)
            if off:
                bright = shift_edges(bright, off)
        elif s.edge_method == "local":
            bright = local_mid_edges(den, bright, t, s.edge_marker_frac, s.edge_local_px, s.edge_local_sectors)
            if off:
                bright = shift_edges(bright, off)
        elif off:
            # sub-pixel edge shift: to first order the level set den - t = off * |grad den|
            # lies `off` px inside the threshold contour (flat areas are unaffected)
            gy, gx = np.gradient(ndi.gaussian_filter(den, 0.7))
            bright = (den - t) > off * np.hypot(gy, gx)
        bright = _clean(bright, s.min_area_px, s.open_px, s.fill_holes_px)
        particles: list[Segment] = []
        if s.blobs and s.blob_method == "dynamic":
            particles = detect_particles(den, bright, s, dyn)
            bright = _drop_particle_islands(bright, particles, s)
        segs = (_watershed_split(bright, s.watershed_min_distance, s.watershed_h) if s.watershed
                else _components(bright, "classical:bright"))
        segs += _components(~bright, "classical:dark")
        if s.blobs:
            segs += particles if s.blob_method == "dynamic" else _blobs(den, bright, s)
        return segs
