"""The classical segmenter: denoise, threshold, clean up, split into segments.

No weights, a few milliseconds to a few tenths of a second per image, and every step
is a scikit-image / scipy call with a named parameter:

1. **Denoise** (`denoise`): non-local means (`"nlm"`, default; strength from the
   noise sigma estimated on the image), bilateral, total variation, Gaussian or none.
2. **Flatten** (`flatten_px`, optional): subtract a very smooth background (charging
   gradients) estimated by a Gaussian of that sigma.
3. **Threshold** (`threshold`): Otsu (global), multi-Otsu (three levels: the lowest
   level is dark, the upper two are bright), Li, or Sauvola (local, for uneven images).
4. **Edge offset** (`edge_offset_px`): SEM edges carry a bright rim and beam blur, so
   the threshold contour lies outside the physical edge. The bright phase is taken as
   `den - t > edge_offset_px * |grad den|`, which moves the contour inwards by that
   many pixels to first order, with sub-pixel resolution (`semlab.segment.evaluate.
   calibrate_on_dataset` fits it on a few labelled images).
5. **Morphology**: components and holes smaller than `min_area_px` are removed /
   filled; `open_px` optionally opens the bright phase.
6. **Segments**: the connected components of the bright phase (optionally split by a
   distance-transform watershed, `watershed=True`, when structures touch) and of
   the dark phase, plus small compact blobs much brighter than their surroundings
   (particle candidates, `blobs=True`). Rules in `semlab.segment.canonical` turn
   segments into canonical classes, exactly as for SAM2's masks.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi

from semlab.segment.base import Segment, check_image

DENOISERS = ("nlm", "bilateral", "tv", "gaussian", "none")
THRESHOLDS = ("otsu", "multiotsu", "li", "sauvola")


@dataclass
class ClassicalSettings:
    denoise: str = "nlm"
    denoise_strength: float = 0.8  # x estimated noise sigma (nlm h, bilateral colour sigma)
    smooth_px: float = 1.0  # Gaussian sigma for denoise="gaussian"; TV weight scale for "tv"
    flatten_px: float = 0.0  # > 0: subtract a Gaussian background of this sigma first
    threshold: str = "otsu"
    sauvola_window: int = 51
    edge_offset_px: float = 0.0  # move pattern edges inwards (sub-pixel; see step 4 above)
    min_area_px: int = 12
    open_px: int = 0
    watershed: bool = False
    watershed_min_distance: int = 4
    blobs: bool = True
    blob_max_radius_px: float = 6.0
    blob_min_area_px: int = 4
    blob_contrast: float = 0.5  # x (bright level - dark level) above the local surroundings
    blob_edge_band_px: float = 0.0  # > 0: drop candidates lying mostly this close to a structure edge
    min_side: int = 16

    def __post_init__(self):
        if self.denoise not in DENOISERS:
            raise ValueError(f"denoise {self.denoise!r}; valid: {DENOISERS}")
        if self.threshold not in THRESHOLDS:
            raise ValueError(f"threshold {self.threshold!r}; valid: {THRESHOLDS}")

    def describe(self) -> dict:
        return {"backend": "classical", **asdict(self)}


def denoise(image: np.ndarray, method: str = "nlm", strength: float = 0.8, smooth_px: float = 1.0) -> np.ndarray:
    """Denoise a float image in [0, 1]; the strength scales the estimated noise sigma."""
    from skimage import filters, restoration

    from semlab.metrics.spectral import noise_sigma_estimate

    img = image.astype(np.float32, copy=False)
    if method == "none":
        return img
    if method == "gaussian":
        return filters.gaussian(img, smooth_px).astype(np.float32)
    sigma = max(float(noise_sigma_estimate(img)), 1e-4)
    if method == "nlm":
        return restoration.denoise_nl_means(img, h=strength * sigma, sigma=sigma, patch_size=5,
                                           patch_distance=5, fast_mode=True).astype(np.float32)
    if method == "bilateral":
        return restoration.denoise_bilateral(img, sigma_color=2.5 * strength * sigma,
                                             sigma_spatial=1.5 * smooth_px).astype(np.float32)
    if method == "tv":
        return restoration.denoise_tv_chambolle(img, weight=strength * sigma * smooth_px).astype(np.float32)
    raise ValueError(f"denoise {method!r}; valid: {DENOISERS}")


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


def _clean(bright: np.ndarray, min_area: int, open_px: int) -> np.ndarray:
    from skimage import morphology

    if open_px > 0:
        bright = morphology.binary_opening(bright, morphology.disk(open_px))
    if min_area > 1:
        bright = morphology.remove_small_objects(bright, max_size=min_area - 1)
        bright = ~morphology.remove_small_objects(~bright, max_size=min_area - 1)
    return bright


def _components(phase: np.ndarray, tag: str) -> list[Segment]:
    lab, n = ndi.label(phase)
    out = []
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None:
            continue
        m = lab == i
        out.append(Segment(m, source=tag))
    return out


def _watershed_split(bright: np.ndarray, min_distance: int) -> list[Segment]:
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    dist = ndi.distance_transform_edt(bright)
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
        den = denoise(img, s.denoise, s.denoise_strength, s.smooth_px)
        if s.flatten_px > 0:
            bg = ndi.gaussian_filter(den, s.flatten_px, mode="reflect")
            den = den - bg + float(bg.mean())
        return den

    def segment(self, image: np.ndarray, source: str | None = None) -> list[Segment]:
        return self.segment_prepared(self.prepare(image, source))

    def segment_prepared(self, den: np.ndarray, edge_offset_px: float | None = None) -> list[Segment]:
        """Segments of an already `prepare`d image (calibration reuses one denoising for
        many edge offsets)."""
        s = self.settings
        off = s.edge_offset_px if edge_offset_px is None else edge_offset_px
        bright, t = bright_phase(den, s)
        if off:
            # sub-pixel edge shift: to first order the level set den - t = off * |grad den|
            # lies `off` px inside the threshold contour (flat areas are unaffected)
            gy, gx = np.gradient(ndi.gaussian_filter(den, 0.7))
            bright = (den - t) > off * np.hypot(gy, gx)
        bright = _clean(bright, s.min_area_px, s.open_px)
        segs = (_watershed_split(bright, s.watershed_min_distance) if s.watershed
                else _components(bright, "classical:bright"))
        segs += _components(~bright, "classical:dark")
        if s.blobs:
            segs += _blobs(den, bright, s)
        return segs
