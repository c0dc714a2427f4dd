"""Segments -> canonical classes, by explicit rules (the same for every backend).

SAM2 returns overlapping masks with no meaning attached; the classical segmenter
returns bright and dark components. `canonicalize` turns either into one label map
in semlab's canonical scheme (0 background, 1 pattern, 2 hole, 3 defect), so a mask a
person draws means the same as a mask the pipeline made. The rules, in order:

1. **Overlaps**: segments are painted from the largest to the smallest (ties: the
   higher score is painted last), so the most specific mask wins a pixel. Pixels no
   segment covers are *unlabeled*; each connected piece of them becomes a region of
   its own (the QA reports their fraction before they are classified).
2. **Intensity**: each region gets the mean of the lightly smoothed image over it.
   An Otsu threshold on the region means (area-weighted) splits the regions into
   bright and dark; with `polarity="bright"` (metal, resist tops in secondary-electron
   images) the bright ones are *pattern*, the dark ones *background*
   (`polarity="dark"` swaps them). `polarity="auto"` (the default of `semlab segment`
   and `semlab.segment.pipeline`) decides per frame
   (`decide_polarity`): in a secondary-electron image the edge effect makes a bright
   rim that overshoots the bright plateau; in an inverted frame (a negative, some
   detectors) the same rim is a dark trough below the dark plateau. Where the troughs
   win, the frame is inverted and the dark phase is the pattern. The pipeline inverts
   such a frame before the backend sees it, so particles are found in it too, and
   records the choice (manifest column `polarity`).
3. **Defects** (if "defect" is among `classes`): a compact region (minor / major axis
   at least `defect_min_axis_ratio`: particles are blobs; a piece of line, a sliver of
   film between close holes or a stretch of edge rim is elongated) of at most
   `defect_max_area_frac` of the image, not touching the border, is a particle if it
   stands out from its surroundings by more than `defect_contrast` x (pattern level -
   background level), measured in one of two ways (`defect_test`):
   - *ring*: its mean exceeds the `defect_ring_percentile` (90th) percentile of the
     2-px ring around it: brighter than everything around it, which a short piece of
     line (as bright as the pattern) or the rim around a contact hole (next to the
     bright film) is not. A particle touching a line's bright edge rim fails this test
     although it is plainly there;
   - *dynamic*: its mean height above the level at which it merges with a region
     larger than twice the largest defect (the image minus its area opening, see
     `semlab.segment.classical.particle_contrast_map`). A particle on a line keeps its
     height above the line, a particle touching a rim its height above the rim; a
     short piece of line or a contact rim, connected to the rest of the pattern or as
     bright as it, has none.
   `defect_test="either"` (default) accepts a region that passes one of them.
4. **Holes** (if "hole" is among `classes`): a non-pattern region that does not touch
   the image border, covers at most `hole_max_area_frac` of the image, and whose
   surrounding ring is at least `hole_enclosure` pattern is a hole (a dark region
   enclosed by pattern). A background region cut by the frame is a hole too if the
   frame has enclosed holes and it looks like a piece of one (`_border_holes`: no
   larger than they are, touching one side or a corner, its ring in the frame pattern).
5. **Specks**: regions smaller than `min_region_px` that are not defects take the
   majority class of the ring around them.
6. **Edge offset** (`edge_offset_px`): pattern boundaries move inwards by that many
   px (negative: outwards), on the pixel grid. SEM edges carry a bright rim and blur,
   so segment edges tend to lie outside the physical edge; `calibrate_edge_offset`
   fits this one number on a few labelled images (the notebook fits it on the
   training split). The classical backend has its own sub-pixel version of it.
7. Classes not in `classes` fall back: a hole becomes background, a defect becomes
   what its intensity says (pattern or background).

Everything is deterministic: the same segments give the same mask.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage as ndi

from semlab import labels
from semlab.segment.base import Segment

UNLABELED = -1
DEFECT_TESTS = ("ring", "dynamic", "either")
POLARITIES = ("auto", "bright", "dark")


def decide_polarity(image: np.ndarray, band_px: int = 2, margin: float = 0.05, smooth_px: float = 1.0,
                    min_side: int = 96, noise_margin: tuple[float, float] = (1.03, 1.08)) -> tuple[str, dict]:
    """Is the pattern the bright phase ("bright") or the dark one ("dark", an inverted
    frame)? First the noise: shot noise grows with the signal, so in an SEM image the
    bright phase is the noisier one and in an inverted frame the dark one
    (`phase_noise_ratio`, bright over dark: "bright" above `noise_margin[0]`, "dark"
    below 1 / `noise_margin[1]`, a wider margin, since inverting an ordinary frame is the
    costlier mistake; on simulated ic-metal, ic-metal-noisy, line-space, contacts,
    contacts-pillars and particles frames at 128 and 256 px the ratio was 1.15-2.1, on
    the real cdsem-lines and cdsem-contacts frames 0.98-1.57, on one DSA frame 0.93;
    on inverted contacts-pillars frames down to 0.915).
    Where the two phases are about as noisy (additive noise only, heavy denoising, 8-bit
    JPEGs), the edge effect decides: the edge effect of secondary-electron images puts a bright rim on the edges
    that overshoots the bright phase; in an inverted frame the rims are troughs below the
    dark phase. Near the edges between the two Otsu phases of the smoothed image
    (`band_px` each side), compare how far the brightest pixels rise above the bright
    phase's median with how far the darkest fall below the dark phase's median, in units
    of the phase gap. Unless the troughs win by `margin` and reach 2 `margin`: "bright"
    (the usual contrast). Frames with weak rims and strong dark halos (contact holes,
    particles with faint rims) may be misjudged when inverted: set the polarity there.
    A third, darker level (holes in a film on a darker ground) also looks like troughs:
    set the polarity for such images. Returns (polarity, evidence)."""
    from skimage import filters

    img = np.asarray(image, np.float32)
    if min(img.shape) < min_side:
        return "bright", {"overshoot": 0.0, "undershoot": 0.0, "reason": f"under {min_side} px: too small to judge, bright assumed"}
    img = ndi.gaussian_filter(img, smooth_px)
    t = float(filters.threshold_otsu(img))
    bright = img > t
    if bright.all() or not bright.any():
        return "bright", {"overshoot": 0.0, "undershoot": 0.0, "reason": "one phase only: bright assumed"}
    hi, lo = float(np.median(img[bright])), float(np.median(img[~bright]))
    gap = max(hi - lo, 1e-6)
    band = ndi.binary_dilation(bright, iterations=band_px) & ~ndi.binary_erosion(bright, iterations=band_px)
    vals = img[band]
    over = (float(np.percentile(vals, 99)) - hi) / gap
    under = (lo - float(np.percentile(vals, 1))) / gap
    ratio = phase_noise_ratio(np.asarray(image, np.float32), bright)
    ev = {"overshoot": round(over, 3), "undershoot": round(under, 3), "noise_ratio": round(ratio, 3)}
    if np.isfinite(ratio) and (ratio > noise_margin[0] or ratio < 1 / noise_margin[1]):
        pol = "bright" if ratio > 1 else "dark"
        return pol, {**ev, "reason": "the bright phase is the noisier (shot noise grows with the signal)"
                     if pol == "bright" else "the dark phase is the noisier: inverted frame"}
    pol = "dark" if under > max(over, 0.0) + margin and under > 2 * margin else "bright"
    return pol, {**ev, "reason": "edge troughs below the dark phase: inverted frame" if pol == "dark"
                 else "edge rims above the bright phase" if over > under else "no clear edge effect: bright assumed"}


def phase_noise_ratio(image: np.ndarray, bright: np.ndarray, erode_px: int = 3, min_px: int = 50,
                      trim: float = 90.0) -> float:
    """Noise of the bright phase over that of the dark phase: the mean absolute response
    of Immerkaer's second-difference kernel (which removes locally linear structure)
    inside each phase, `erode_px` away from the edges (fewer if a phase erodes to under
    `min_px` pixels; frames of 256 px or more are read on every other pixel),
    responses above the `trim` percentile left out (particles, rims;
    a trimmed mean, unlike a median, stays continuous on 8-bit data). NaN if a phase is
    too small or flat."""
    k = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]], np.float32)
    r = np.abs(ndi.correlate(np.asarray(image, np.float32), k, mode="reflect"))
    step = 2 if min(r.shape) >= 256 else 1  # every other pixel: plenty for a mean, 4x faster
    r, b = r[::step, ::step], np.asarray(bright, bool)[::step, ::step]
    for it in range(erode_px, 0, -1):  # (on the subsampled grid: up to 2 x erode_px at full size)
        bi = ndi.binary_erosion(b, iterations=it, border_value=0)
        di = ndi.binary_erosion(~b, iterations=it, border_value=0)
        if bi.sum() >= min_px and di.sum() >= min_px:
            nb, nd = (float(v[v <= np.percentile(v, trim)].mean()) for v in (r[bi], r[di]))
            return nb / nd if nb > 0 and nd > 0 else float("nan")  # 0: saturated or quantised flat
    return float("nan")


@dataclass
class CanonicalRules:
    classes: tuple[str, ...] = ("background", "pattern", "hole", "defect")
    polarity: str = "bright"  # "bright", "dark" or "auto" (decided per frame, rule 2; the pipeline's default)
    defect_above_pattern: float | None = None  # > x gap above the pattern level too (particles as pattern)
    smooth_px: float = 1.0
    defect_max_area_frac: float = 0.001
    defect_contrast: float = 0.3
    defect_ring_percentile: float = 90.0
    defect_test: str = "either"  # "ring", "dynamic" or "either" (module docstring, rule 3)
    defect_min_axis_ratio: float = 0.6  # minor / major axis a defect region needs (compact blob)
    hole_enclosure: float = 0.9
    hole_max_area_frac: float = 0.05
    min_region_px: int = 4
    edge_offset_px: float = 0.0

    def __post_init__(self):
        self.classes = tuple(self.classes)
        for c in self.classes:
            labels.class_by_name(c)  # KeyError listing valid names
        if "background" not in self.classes and "pattern" not in self.classes:
            raise ValueError("classes must include background or pattern")
        if self.polarity not in POLARITIES:
            raise ValueError(f"polarity {self.polarity!r}; valid: {', '.join(POLARITIES)}")
        if self.defect_test not in DEFECT_TESTS:
            raise ValueError(f"defect_test {self.defect_test!r}; valid: {DEFECT_TESTS}")

    def describe(self) -> dict:
        d = asdict(self)
        d["classes"] = list(self.classes)
        return d


@dataclass
class Canonical:
    mask: np.ndarray  # uint8 (H, W) canonical label map
    regions: np.ndarray  # int32 (H, W) region id after overlap resolution (for display)
    unlabeled_frac: float  # before classification: pixels no segment covered
    n_segments: int
    levels: dict = field(default_factory=dict)  # pattern / background mean intensity, threshold
    region_classes: dict = field(default_factory=dict)  # region id -> class id


def paint_segments(segments: list[Segment], shape: tuple[int, int]) -> np.ndarray:
    """Overlap resolution: region map with each pixel's winning segment index (-1: none)."""
    out = np.full(shape, UNLABELED, np.int32)
    order = sorted(range(len(segments)), key=lambda i: (-segments[i].area, segments[i].score, i))
    for i in order:
        m = segments[i].mask
        if m.shape != shape:
            raise ValueError(f"segment {i} has shape {m.shape}, the image {shape}")
        out[m] = i
    return out


def _otsu_weighted(values: np.ndarray, weights: np.ndarray) -> float:
    """Otsu threshold of a weighted sample (region means weighted by area)."""
    order = np.argsort(values)
    v, w = values[order].astype(np.float64), weights[order].astype(np.float64)
    if len(v) < 2 or v[-1] - v[0] < 1e-9:
        return float(v[0]) if len(v) else 0.5
    cw = np.cumsum(w)
    cm = np.cumsum(w * v)
    tot_w, tot_m = cw[-1], cm[-1]
    w0 = cw[:-1]
    w1 = tot_w - w0
    mu0 = cm[:-1] / w0
    mu1 = (tot_m - cm[:-1]) / w1
    between = w0 * w1 * (mu0 - mu1) ** 2
    k = int(np.argmax(between))
    return float(0.5 * (v[k] + v[k + 1]))


def _ring(region: np.ndarray, width: int = 2) -> np.ndarray:
    return ndi.binary_dilation(region, iterations=width) & ~region


def apply_edge_offset(mask: np.ndarray, offset_px: float) -> np.ndarray:
    """Move pattern boundaries inwards by `offset_px` (negative: outwards), on the pixel
    grid via Euclidean distance transforms. Pixels given up take the nearest non-pattern
    class (background or hole); pattern grows only into background."""
    if abs(offset_px) < 1e-9:
        return mask
    out = mask.copy()
    pat = mask == labels.PATTERN
    if offset_px > 0:
        if not pat.any() or pat.all():
            return out
        inside = ndi.distance_transform_edt(pat) - 0.5
        drop = pat & (inside <= offset_px)
        _, (iy, ix) = ndi.distance_transform_edt(pat, return_indices=True)
        out[drop] = mask[iy[drop], ix[drop]]
    else:
        bg = mask == labels.BACKGROUND
        if not pat.any():
            return out
        outside = ndi.distance_transform_edt(~pat) - 0.5
        out[bg & (outside <= -offset_px)] = labels.PATTERN
    return out


def _axis_ratio(region: np.ndarray) -> float:
    """Minor / major axis of a region's second moments (1 for a disc, 0 for a line);
    a single pixel counts as round."""
    yy, xx = np.nonzero(region)
    if len(yy) < 2:
        return 1.0
    cov = np.cov(np.stack([yy, xx]).astype(np.float64), bias=True) + np.eye(2) / 12.0  # pixel extent
    ev = np.linalg.eigvalsh(cov)
    return float(np.sqrt(max(ev[0], 0.0) / max(ev[1], 1e-12)))


def _region_dynamic(smooth: np.ndarray, reg: np.ndarray, n_reg: int, area: np.ndarray,
                    max_defect_px: float) -> np.ndarray | None:
    """Mean height of each region above the level at which it merges with a bright
    region larger than twice the largest defect (rule 3, *dynamic*); None when no
    region is small enough to be a defect (nothing to compute)."""
    if not (area <= max_defect_px).any():
        return None
    from semlab.segment.classical import particle_contrast_map

    dyn = particle_contrast_map(smooth, int(round(2 * max_defect_px)) + 1, smooth_px=0.0)
    return np.bincount(reg.ravel(), weights=dyn.ravel(), minlength=n_reg) / np.maximum(area, 1)


def canonicalize(image: np.ndarray, segments: list[Segment], rules: CanonicalRules | None = None) -> Canonical:
    """Turn backend segments into a canonical label map (see the module docstring)."""
    rules = rules or CanonicalRules()
    img = np.asarray(image, np.float32)
    h, w = img.shape
    polarity = rules.polarity
    if polarity == "auto":
        polarity = decide_polarity(img)[0]
        if polarity == "dark":  # an inverted frame: judge it as its negative
            img = float(img.max()) + float(img.min()) - img
            polarity = "bright"
    smooth = ndi.gaussian_filter(img, rules.smooth_px) if rules.smooth_px > 0 else img
    reg = paint_segments(segments, (h, w))
    unl = reg == UNLABELED
    unlabeled_frac = float(unl.mean())
    if unl.any():  # each connected gap is a region of its own
        gaps, ng = ndi.label(unl)
        reg = np.where(unl, gaps - 1 + len(segments), reg)
    # compact region ids 0..R-1
    ids, reg = np.unique(reg, return_inverse=True)
    reg = reg.reshape(h, w).astype(np.int32)
    n_reg = len(ids)
    area = np.bincount(reg.ravel(), minlength=n_reg).astype(np.float64)
    mean = np.bincount(reg.ravel(), weights=smooth.ravel(), minlength=n_reg) / np.maximum(area, 1)

    t = _otsu_weighted(mean, area)
    spread = float(mean.max() - mean.min()) if n_reg else 0.0
    bright = mean > t if spread > 0.02 else np.zeros(n_reg, bool)
    is_pat = bright if polarity == "bright" else ~bright
    if spread <= 0.02 and polarity == "dark":
        is_pat[:] = False
    cls = np.where(is_pat, labels.PATTERN, labels.BACKGROUND).astype(np.uint8)
    pat_level = float(np.average(mean[is_pat], weights=area[is_pat])) if is_pat.any() else float("nan")
    bg_level = float(np.average(mean[~is_pat], weights=area[~is_pat])) if (~is_pat).any() else float("nan")
    gap = abs(pat_level - bg_level) if np.isfinite(pat_level) and np.isfinite(bg_level) else spread

    objs = ndi.find_objects(reg + 1)
    border = np.zeros(n_reg, bool)
    for edge in (reg[0], reg[-1], reg[:, 0], reg[:, -1]):
        border[np.unique(edge)] = True

    def ring_stats(r: int) -> tuple[np.ndarray, np.ndarray]:
        sl = objs[r]
        sl = tuple(slice(max(s.start - 3, 0), s.stop + 3) for s in sl)
        sub = reg[sl] == r
        ring = _ring(sub, 2)
        return ring, sl

    n_px = h * w
    want_defect = "defect" in rules.classes
    want_hole = "hole" in rules.classes
    use_dyn = want_defect and rules.defect_test != "ring" and gap > 0
    dyn_mean, dyn_done = None, False  # computed on first need (an area opening of the frame: the costly step)
    for r in range(n_reg):
        if area[r] > max(rules.defect_max_area_frac, rules.hole_max_area_frac) * n_px and area[r] >= rules.min_region_px:
            continue
        ring, sl = ring_stats(r)
        if not ring.any():
            continue
        ring_regs = reg[sl][ring]
        if want_defect and area[r] <= rules.defect_max_area_frac * n_px and not border[r] and gap > 0:
            ok = False
            if rules.defect_test != "dynamic":
                ring_hi = float(np.percentile(smooth[sl][ring], rules.defect_ring_percentile))
                ok = mean[r] - ring_hi > rules.defect_contrast * gap
            above = (rules.defect_above_pattern is None or not np.isfinite(pat_level)
                     or mean[r] - pat_level > rules.defect_above_pattern * gap)
            compact = above and _axis_ratio(reg[sl] == r) >= rules.defect_min_axis_ratio
            if not ok and use_dyn and compact:  # the dynamic only where it can decide
                if not dyn_done:
                    dyn_mean = _region_dynamic(smooth, reg, n_reg, area, rules.defect_max_area_frac * n_px)
                    dyn_done = True
                ok = dyn_mean is not None and dyn_mean[r] > rules.defect_contrast * gap
            if ok and compact:
                cls[r] = labels.DEFECT
                continue
        if area[r] < rules.min_region_px:
            vals = cls[ring_regs]
            cls[r] = np.bincount(vals, minlength=labels.NUM_CLASSES).argmax()
            continue
        if (want_hole and cls[r] == labels.BACKGROUND and not border[r]
                and area[r] <= rules.hole_max_area_frac * n_px):
            if float((cls[ring_regs] == labels.PATTERN).mean()) >= rules.hole_enclosure:
                cls[r] = labels.HOLE
    if want_hole:
        _border_holes(cls, reg, objs, area, border, rules)
    if "background" not in rules.classes:  # e.g. a film with holes: dark = hole
        cls[cls == labels.BACKGROUND] = labels.HOLE if want_hole else labels.PATTERN
    if "pattern" not in rules.classes:
        cls[cls == labels.PATTERN] = labels.BACKGROUND
    mask = cls[reg]
    mask = apply_edge_offset(mask, rules.edge_offset_px)
    return Canonical(mask=mask.astype(np.uint8), regions=reg, unlabeled_frac=unlabeled_frac,
                     n_segments=len(segments),
                     levels={"pattern": pat_level, "background": bg_level, "threshold": t},
                     region_classes={int(i): int(c) for i, c in enumerate(cls)})


def _border_holes(cls: np.ndarray, reg: np.ndarray, objs: list, area: np.ndarray, border: np.ndarray,
                  rules: CanonicalRules, slack: float = 1.15) -> None:
    """Rule 4b, in place: a hole cut by the frame. A background region touching the
    border is a hole if the frame has enclosed holes and it looks like a piece of one:
    no larger than the largest enclosed hole (area and both bounding-box extents, with
    `slack`), touching one side of the frame or two adjacent ones (a space between
    lines spans the frame, side to side), and its ring inside the frame at least
    `hole_enclosure` pattern. Without enclosed holes nothing changes."""
    inner = np.flatnonzero((cls == labels.HOLE) & ~border)
    if not len(inner):
        return
    h, w = reg.shape
    ext = max(max(objs[r][0].stop - objs[r][0].start, objs[r][1].stop - objs[r][1].start) for r in inner)
    a_max = float(area[inner].max())
    for r in np.flatnonzero((cls == labels.BACKGROUND) & border):
        sl = objs[r]
        ey, ex = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        if area[r] > slack * a_max or max(ey, ex) > slack * ext:
            continue
        top, bottom = sl[0].start == 0, sl[0].stop == h
        left, right = sl[1].start == 0, sl[1].stop == w
        if (top and bottom) or (left and right):
            continue
        pad = tuple(slice(max(s.start - 3, 0), s.stop + 3) for s in sl)
        sub = reg[pad] == r
        ring = _ring(sub, 2)
        if ring.any() and float((cls[reg[pad][ring]] == labels.PATTERN).mean()) >= rules.hole_enclosure:
            cls[r] = labels.HOLE


def class_iou(pred: np.ndarray, truth: np.ndarray, classes=None) -> dict[str, float]:
    """Per-class IoU of label maps (aggregated over all pixels given); NaN where a class
    is absent from both."""
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    out = {}
    for c in labels.CLASSES:
        if classes is not None and c.name not in classes and c.id not in classes:
            continue
        p, t = pred == c.id, truth == c.id
        u = int((p | t).sum())
        out[c.name] = float((p & t).sum() / u) if u else float("nan")
    return out


def calibrate_edge_offset(pairs, rules: CanonicalRules, segmenter, offsets=None) -> tuple[float, dict]:
    """Fit the edge offset on labelled images: `pairs` yields (image, true mask).

    For a segmenter with `segment_prepared` (the classical one) the offset is its own
    sub-pixel `edge_offset_px`; for any other (SAM2) it is the canonical rule's
    pixel-grid `edge_offset_px`. Returns the offset with the best mean IoU of the
    structure classes (background, pattern, hole; particles are too small to tell) and
    the score per offset tried. Nothing is modified."""
    offsets = np.round(np.arange(-1.0, 2.01, 0.25), 2) if offsets is None else np.asarray(offsets)
    base = CanonicalRules(**{**rules.describe(), "edge_offset_px": 0.0})
    cls = (labels.BACKGROUND, labels.PATTERN, labels.HOLE)
    inter = {float(o): np.zeros(len(cls)) for o in offsets}
    union = {float(o): np.zeros(len(cls)) for o in offsets}
    subpixel = hasattr(segmenter, "segment_prepared")
    for image, truth in pairs:
        if subpixel:
            den = segmenter.prepare(image)
            masks = {float(o): canonicalize(image, segmenter.segment_prepared(den, float(o)), base).mask
                     for o in offsets}
        else:
            m0 = canonicalize(image, segmenter.segment(image), base).mask
            masks = {float(o): apply_edge_offset(m0, float(o)) for o in offsets}
        for o, m in masks.items():
            for k, c in enumerate(cls):
                p, t = m == c, truth == c
                inter[o][k] += (p & t).sum()
                union[o][k] += (p | t).sum()
    score = {}
    for o in inter:
        ok = union[o] > 0
        score[o] = float((inter[o][ok] / union[o][ok]).mean()) if ok.any() else float("nan")
    best = max(score, key=lambda o: (score[o], -abs(o)))
    return best, score
