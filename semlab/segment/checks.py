"""Label-free checks of segmentation masks on real frames (issue 19 item 4).

Real SEM frames have no human masks, so masks are judged by physics. Each check is an
*error*: 0 for a perfect mask of an ideal pattern, larger when the mask is worse. The
pattern of a canonical mask is its bright structure (pattern plus defects).

Checks for any frame (`GENERIC_CHECKS`):

- `edge_offset` (px): where the image's edges are, relative to the mask's boundary.
  Every pixel near the boundary is binned by its signed distance to it (1-px bins,
  + inside the pattern); the mean Gaussian gradient magnitude of the image per bin is
  the edge-strength profile across the boundary, and the sub-pixel position of its
  maximum (a parabola through the top bin and its neighbours) is where the physical
  edges sit. A boundary on the physical edge sits on the gradient maximum: the check
  is |that position| (up to `EDGE_RANGE_PX`; `EDGE_RANGE_PX` for a mask with no
  boundary). An edge offset, a shifted threshold or a blur moves it 1:1.
- `polarity`: 1 if the mask's pattern is darker than the rest (medians of the pixels at
  least 2 px from the boundary), else 0. The canonical pattern is the bright phase.

Line frames (`LINE_CHECKS`):

- `cd_error`: |mask CD - image CD| / image CD. The mask's CD is its mean line width
  (`semlab.metrology.line_edges` on the mask); the image's is the sub-pixel classical
  metrology CD of the bright lines (`line_edges` on the image: crossings of the level
  half-way between the two phases), which needs no segmentation. 1 when the mask holds
  no line.
- `pitch`: |median spacing of the mask's line centres - FFT pitch| / FFT pitch.
- `cd_variation`: per line the std of the mask's width along the line over its mean,
  averaged over lines.

Contact frames (`CONTACT_CHECKS`): contacts are the minority phase's components clear of
the frame (dark holes, or bright pillars).

- `cd_error`: |mask's mean contact diameter - image's| / image's
  (`semlab.metrology.measure_contacts`: sub-pixel contours at the mid level).
- `roundness`: 1 - mean minor/major axis ratio; `diameter_variation`: std/mean of the
  equivalent diameters.

Set-level (`SET_CHECKS`): `fraction_variation`, the std/mean of the pattern fraction over
a set's frames.

No check is trusted before it is validated on simulated truth
(`semlab.segment.checks_validate`): only the checks it keeps (Spearman rho >= 0.5 with
the true IoU) go into the real table (`real_check_table`), which has rows for the old
defaults (ALGORITHM_VERSION 2: fixed denoising strength 0.8, no illumination
flattening, bright polarity), the new defaults (noise-set denoising, flattening,
per-frame polarity) and a blurred global Otsu (Gaussian sigma 2, `skimage`'s Otsu), on
crops of every real frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from semlab import labels

KEEP_RHO = 0.5
EDGE_RANGE_PX = 4
GENERIC_CHECKS = ("edge_offset", "polarity")
LINE_CHECKS = ("cd_error", "pitch", "cd_variation")
CONTACT_CHECKS = ("cd_error", "roundness", "diameter_variation")
SET_CHECKS = ("fraction_variation",)
CHECKS = GENERIC_CHECKS + ("cd_error", "pitch", "cd_variation", "roundness", "diameter_variation") + SET_CHECKS
KINDS = ("lines", "contacts", "any")
METHODS = ("old defaults", "new defaults", "blurred otsu")
# the segmenter of ALGORITHM_VERSION 2 (see semlab.segment.pipeline): what changed in 3
OLD_DEFAULTS = {"denoise_strength": 0.8, "flatten_degree": 0, "edge_method": "threshold"}


def frame_check_names(kind: str) -> tuple[str, ...]:
    """The per-frame checks of a frame kind ("lines", "contacts" or "any")."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return GENERIC_CHECKS + {"lines": LINE_CHECKS, "contacts": CONTACT_CHECKS, "any": ()}[kind]


# ---------------------------------------------------------------------------- masks


def global_threshold(image: np.ndarray, sigma: float = 2.0, shift: float = 0.0) -> np.ndarray:
    """Pattern (1) where the Gaussian-blurred image (`sigma` px; 0: none) is above its
    Otsu threshold plus `shift` x its 5-95 percentile range, background (0) elsewhere."""
    from skimage.filters import gaussian, threshold_otsu

    sm = gaussian(np.asarray(image, np.float32), sigma) if sigma > 0 else np.asarray(image, np.float32)
    t = float(threshold_otsu(sm))
    if shift:
        lo, hi = np.percentile(sm, [5, 95])
        t += shift * float(hi - lo)
    return (sm > t).astype(np.uint8) * labels.PATTERN


def blurred_otsu(image: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """The baseline: pattern (1) where the Gaussian-blurred image is above its Otsu
    threshold, background (0) elsewhere."""
    return global_threshold(image, sigma, 0.0)


def segment_with(image: np.ndarray, method, source: str | None = None) -> np.ndarray:
    """Canonical mask of one frame by a method name of `METHODS`, a dict of classical
    settings (the new defaults' rules: polarity per frame), or a dict with
    `global_sigma` (and optional `global_shift`) for `global_threshold`."""
    from semlab.segment.canonical import CanonicalRules
    from semlab.segment.pipeline import make_segmenter, segment_image

    if method == "blurred otsu" or method is None:
        return blurred_otsu(image)
    if method == "new defaults":
        method = {}
    if method == "old defaults":
        return segment_image(image, make_segmenter("classical", **OLD_DEFAULTS), CanonicalRules(polarity="bright"),
                             source=source).mask
    if not isinstance(method, dict):
        raise KeyError(f"unknown method {method!r}; valid: {', '.join(METHODS)} or a dict of classical settings")
    if "global_sigma" in method:
        return global_threshold(image, float(method["global_sigma"]), float(method.get("global_shift", 0.0)))
    return segment_image(image, make_segmenter("classical", **method), CanonicalRules(polarity="auto"),
                         source=source).mask


def pattern_of(mask: np.ndarray) -> np.ndarray:
    """The bright structure of a canonical mask: pattern plus defects on it."""
    return (mask == labels.PATTERN) | (mask == labels.DEFECT)


# ---------------------------------------------------------------------------- checks


def _signed_distance(pattern: np.ndarray) -> np.ndarray:
    """Signed distance (px) of every pixel centre to the mask boundary, + inside the
    pattern; the boundary lies half-way between pixel centres."""
    return np.where(pattern, ndi.distance_transform_edt(pattern) - 0.5, -(ndi.distance_transform_edt(~pattern) - 0.5))


def edge_profile(image: np.ndarray, pattern: np.ndarray, *, sigma: float = 1.0,
                 range_px: int = EDGE_RANGE_PX) -> tuple[np.ndarray, np.ndarray]:
    """(bin centres, mean Gaussian gradient magnitude) of the pixels within `range_px` of
    the mask boundary, binned by signed distance in 1-px bins (NaN for empty bins)."""
    g = ndi.gaussian_gradient_magnitude(np.asarray(image, np.float64), sigma)
    d = _signed_distance(pattern)
    near = np.abs(d) < range_px
    idx = np.floor(d[near]).astype(np.int64) + range_px
    s = np.bincount(idx, weights=g[near], minlength=2 * range_px)
    c = np.bincount(idx, minlength=2 * range_px)
    return np.arange(2 * range_px) - range_px + 0.5, np.where(c > 0, s / np.maximum(c, 1), np.nan)


def edge_offset(image: np.ndarray, pattern: np.ndarray, range_px: int = EDGE_RANGE_PX) -> float:
    """|sub-pixel position of the edge-strength maximum| relative to the mask boundary
    (px, see the module doc); `range_px` for a mask without boundary."""
    if pattern.all() or not pattern.any():
        return float(range_px)
    t, g = edge_profile(image, pattern, range_px=range_px)
    if not np.isfinite(g).any():
        return float(range_px)
    k = int(np.nanargmax(g))
    pos = float(t[k])
    if 0 < k < len(g) - 1 and np.isfinite(g[k - 1]) and np.isfinite(g[k + 1]):
        den = g[k - 1] - 2 * g[k] + g[k + 1]
        if den < 0:
            pos += float(np.clip(0.5 * (g[k - 1] - g[k + 1]) / den, -0.5, 0.5))
    return float(min(abs(pos), range_px))


def polarity_error(image: np.ndarray, pattern: np.ndarray, far_px: float = 2.0) -> float:
    """1.0 if the pattern is darker than the rest (medians of the pixels at least
    `far_px` from the boundary, or of all if too few), else 0.0; NaN with one phase."""
    if pattern.all() or not pattern.any():
        return float("nan")
    x = np.asarray(image, np.float64)
    d = _signed_distance(pattern)
    inner, outer = x[d >= far_px], x[d <= -far_px]
    inner = inner if inner.size >= 16 else x[pattern]
    outer = outer if outer.size >= 16 else x[~pattern]
    return float(np.median(inner) < np.median(outer))


def _line_widths(pattern: np.ndarray):
    from semlab.metrology import line_edges

    x = pattern.astype(np.float32)
    if x.min() == x.max():
        return None
    try:
        e = line_edges(x, polarity="bright", smooth_px=0.0, threshold=0.5)
    except ValueError:
        return None
    return e if e.n_lines >= 2 else None


def _mean_width(e) -> float:
    w = e.right - e.left
    per = [float(np.nanmean(r)) for r in w if np.isfinite(r).any()]
    return float(np.mean(per)) if per else float("nan")


def image_line_cd(image: np.ndarray, orientation: str = "auto") -> float:
    """Classical metrology CD (px) of the bright lines of an image (NaN if none found)."""
    from semlab.metrology import line_edges

    try:
        e = line_edges(np.asarray(image, np.float32), orientation=orientation, polarity="bright", smooth_px=1.0)
    except ValueError:
        return float("nan")
    return _mean_width(e)


def line_cd_error(image: np.ndarray, pattern: np.ndarray) -> float:
    """|mask CD - image CD| / image CD (see the module doc); 1 for a mask without lines,
    NaN if the image has no measurable lines."""
    e = _line_widths(pattern)
    ref = image_line_cd(image, "auto" if e is None else ("horizontal" if e.transposed else "vertical"))
    if not np.isfinite(ref) or ref <= 0:
        return float("nan")
    cd = float("nan") if e is None else _mean_width(e)
    return float(min(abs(cd - ref) / ref, 1.0)) if np.isfinite(cd) else 1.0


def contact_cd_error(image: np.ndarray, pattern: np.ndarray) -> float:
    """|mask's mean contact diameter - image's| / image's; 1 for a mask without contacts,
    NaN if the image has none."""
    from semlab.metrology import measure_contacts

    polarity = "dark" if pattern.mean() >= 0.5 else "bright"  # the mask's contacts: its minority phase
    try:
        ref = measure_contacts(np.asarray(image, np.float32), polarity=polarity).diameter
    except ValueError:
        return float("nan")
    if not np.isfinite(ref) or ref <= 0:
        return float("nan")
    d = [2.0 * math.sqrt(p.area / math.pi) for p in contacts_of(pattern)]
    return float(min(abs(np.mean(d) - ref) / ref, 1.0)) if d else 1.0


def pitch_error(image: np.ndarray, pattern: np.ndarray) -> float:
    """|median spacing of the mask's line centres - FFT pitch| / FFT pitch (NaN if the
    mask holds fewer than two lines)."""
    from semlab.metrology import fft_pitch

    e = _line_widths(pattern)
    if e is None:
        return float("nan")
    centres = np.nanmedian((e.left + e.right) / 2.0, axis=1)
    spacing = np.diff(np.sort(centres[np.isfinite(centres)]))
    if not len(spacing):
        return float("nan")
    p_fft = fft_pitch(np.asarray(image, np.float32)).pitch_px
    return float(abs(np.median(spacing) - p_fft) / p_fft)


def cd_variation(pattern: np.ndarray) -> float:
    """Mean over lines of std(width along the line) / mean width (NaN without lines)."""
    e = _line_widths(pattern)
    if e is None:
        return float("nan")
    w = e.right - e.left
    out = [float(np.nanstd(r) / np.nanmean(r)) for r in w if np.isfinite(r).sum() >= 4 and np.nanmean(r) > 0]
    return float(np.mean(out)) if out else float("nan")


def contacts_of(pattern: np.ndarray, min_area: int = 9) -> list:
    """Region properties of the contacts: components of the minority phase (holes or
    pillars) at least `min_area` px and clear of the frame."""
    from skimage.measure import regionprops

    minority = ~pattern if pattern.mean() >= 0.5 else pattern
    lab, _ = ndi.label(minority)
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    return [p for p in regionprops(lab) if p.label not in border and p.area >= min_area]


def roundness_error(pattern: np.ndarray) -> float:
    """1 - mean minor/major axis ratio of the contacts (NaN without contacts)."""
    props = contacts_of(pattern)
    r = [p.axis_minor_length / p.axis_major_length for p in props if p.axis_major_length > 0]
    return float(1.0 - np.mean(r)) if r else float("nan")


def diameter_variation(pattern: np.ndarray) -> float:
    """std / mean of the contacts' equivalent diameters (NaN with fewer than 2)."""
    d = np.array([2.0 * math.sqrt(p.area / math.pi) for p in contacts_of(pattern)])
    return float(d.std() / d.mean()) if len(d) >= 2 else float("nan")


def fraction_variation(fractions) -> float:
    """std / mean of the pattern fractions of a set's frames (NaN with fewer than 2)."""
    f = np.asarray(list(fractions), np.float64)
    return float(f.std() / f.mean()) if len(f) >= 2 and f.mean() > 0 else float("nan")


def frame_checks(image: np.ndarray, mask: np.ndarray, kind: str, only=None) -> dict[str, float]:
    """The per-frame checks of a frame of `kind` ("lines", "contacts" or "any") and its
    mask (those in `only`, if given), plus its pattern fraction."""
    names = [c for c in frame_check_names(kind) if only is None or c in only]
    pat = pattern_of(mask)
    fn = {"edge_offset": lambda: edge_offset(image, pat), "polarity": lambda: polarity_error(image, pat),
          "pitch": lambda: pitch_error(image, pat), "cd_variation": lambda: cd_variation(pat),
          "roundness": lambda: roundness_error(pat), "diameter_variation": lambda: diameter_variation(pat),
          "cd_error": lambda: (line_cd_error if kind == "lines" else contact_cd_error)(image, pat)}
    return {"pattern_fraction": float(pat.mean()), **{c: fn[c]() for c in names}}


# ---------------------------------------------------------------------------- real frames


SET_KIND = {"cdsem-lines": "lines", "litho-lines": "lines", "dsa-lines": "lines", "cdsem-contacts": "contacts"}
REAL_SETS = ("cdsem-lines", "cdsem-contacts", "litho-lines")  # the packaged sets


@dataclass
class RealCrop:
    set: str
    frame: str
    split: str
    image: np.ndarray
    origin: tuple[int, int]  # of the crop, in px of the frame as read
    scale: int = 1  # the frame was block-averaged by this factor before cropping


def frame_scale(img: np.ndarray, crop: int, min_periods: float = 2.0) -> int:
    """The integer block-averaging factor that fits `min_periods` periods of the frame's
    pattern (`semlab.metrology.fft_pitch`, on a coarse copy) into a `crop`-px crop (1
    when they fit already, or when the frame has no clear period)."""
    from skimage.transform import downscale_local_mean

    from semlab.metrology import fft_pitch

    k = max(1, min(img.shape) // 256)  # a coarse copy: fft_pitch of a whole frame takes seconds
    try:
        pitch = fft_pitch(downscale_local_mean(np.asarray(img, np.float32), (k, k)), pad=1).pitch_px * k
    except ValueError:
        return 1
    return max(1, math.ceil(min_periods * pitch / crop - 0.05))  # (the coarse pitch is good to a few %)


def real_crops(sets=None, crop: int = 256, min_periods: float = 2.0) -> list[RealCrop]:
    """A centred `crop`-px crop (above the data bar) of every frame of the real sets
    (default: the packaged sets `REAL_SETS`; any set of `SET_KIND` present, packaged or
    in ../shared, may be named). A frame whose pattern period is too coarse for the crop
    to hold `min_periods` periods (the micrometre litho frames) is block-averaged first
    (`frame_scale`; recorded as `RealCrop.scale`)."""
    from skimage.transform import downscale_local_mean

    from semlab import io
    from semlab.data import samples
    from semlab.data.sources import detect_databar

    present = set(samples.list_sets()) | set(samples.shared_sets())
    unknown = [s for s in (sets or ()) if s not in SET_KIND]
    if unknown:
        raise KeyError(f"no label-free checks for set(s) {', '.join(unknown)}; valid: {', '.join(SET_KIND)}")
    sets = [s for s in (sets or REAL_SETS) if s in present]
    out = []
    for name in sets:
        inf = samples.info(name)
        split = samples.stored_split(name)
        for f in samples.frames(name):
            img = io.read_image(f)
            bar = (inf.get("databar_row") or {}).get(f.name) or detect_databar(img)
            if bar:
                img = img[:bar]
            k = frame_scale(img, crop, min_periods)
            if k > 1:
                h, w = (img.shape[0] // k) * k, (img.shape[1] // k) * k
                img = downscale_local_mean(np.asarray(img[:h, :w], np.float32), (k, k))
            h, w = img.shape
            c = min(crop, h, w)
            y0, x0 = (h - c) // 2, (w - c) // 2
            out.append(RealCrop(name, f.name, split.get(f.name, ""),
                                np.ascontiguousarray(img[y0:y0 + c, x0:x0 + c], np.float32), (y0 * k, x0 * k), k))
    return out


def _kept_for(kept, kind: str) -> tuple[str, ...]:
    """The kept checks of a frame kind: `kept` is a list (for every kind) or a dict
    kind -> list (`checks_validate.validate(...)["kept"]`)."""
    if isinstance(kept, dict):
        return tuple(kept.get(kind, ()))
    return tuple(kept)


def real_check_table(crops: list[RealCrop], kept=CHECKS, methods=METHODS, progress: bool = True) -> dict:
    """Per set and method: the mean of each kept check over the set's crops
    (`fraction_variation` over them), n frames, and whether the new defaults beat the
    blurred Otsu on it (lower is better). `kept`: checks for every kind, or a dict kind
    -> checks. Also the masks, for `semlab.viz.segcheck.segcheck_figure`."""
    from tqdm.auto import tqdm

    masks: dict[tuple[str, str], np.ndarray] = {}
    per: dict[tuple[str, str], list[dict]] = {}
    for cr in tqdm(crops, desc="real frames", disable=not progress, unit="frame"):
        kind = SET_KIND.get(cr.set, "lines")
        for m in methods:
            mask = segment_with(cr.image, m, source=f"{cr.set}/{cr.frame}")
            masks[(cr.frame, m)] = mask
            per.setdefault((cr.set, m), []).append(frame_checks(cr.image, mask, kind, only=_kept_for(kept, kind)))
    rows = []
    for (s, m), vals in per.items():
        kind = SET_KIND.get(s, "lines")
        k = _kept_for(kept, kind)
        row = {"domain": "real", "set": s, "kind": kind, "method": m, "n_frames": len(vals),
               "crop_px": int(crops[0].image.shape[0]) if crops else 0,
               "downscale": sorted({c.scale for c in crops if c.set == s})}
        for c in frame_check_names(kind):
            if c in k:
                v = [x[c] for x in vals if np.isfinite(x[c])]
                row[c] = float(np.mean(v)) if v else float("nan")
        if "fraction_variation" in k:
            row["fraction_variation"] = fraction_variation(x["pattern_fraction"] for x in vals)
        rows.append(row)
    verdict = {}
    for s in sorted({r["set"] for r in rows}):
        new = next((r for r in rows if r["set"] == s and r["method"] == "new defaults"), None)
        otsu = next((r for r in rows if r["set"] == s and r["method"] == "blurred otsu"), None)
        if new is None or otsu is None:
            continue
        for c in CHECKS:
            if c in new and np.isfinite(new[c]) and np.isfinite(otsu.get(c, float("nan"))):
                verdict[f"{c}@{s}"] = bool(new[c] < otsu[c])
    return {"rows": rows, "new_beats_otsu": verdict, "masks": masks,
            "kept": {k: list(v) for k, v in kept.items()} if isinstance(kept, dict) else list(kept)}


def check_table_markdown(table: dict, floors: dict | None = None) -> str:
    """The real table as Markdown (lower is better for every check). `floors` (kind ->
    check -> the true masks' value on simulated frames, `checks_validate.floors`): the
    (check, set) pairs where the new defaults and the Otsu are both below it are named
    as not resolved."""
    cols = [c for c in CHECKS if any(c in r for r in table["rows"])]
    crop = table["rows"][0].get("crop_px", "") if table["rows"] else ""
    lines = [f"Real frames (centred crops of up to {crop} px, of frames block-averaged by the factor shown when "
             f"their pattern is too coarse for two periods to fit; every check an error, lower is better; kept "
             f"checks only): " + (", ".join(cols) or "none"), "",
             "| set | method | n frames | downscale | " + " | ".join(cols) + " |",
             "|---|---|---|---|" + "---|" * len(cols)]
    for r in sorted(table["rows"], key=lambda r: (r["set"], METHODS.index(r["method"]) if r["method"] in METHODS else 9)):
        cells = [f"{r[c]:.3f}" if c in r and np.isfinite(r[c]) else "" for c in cols]
        lines.append(f"| {r['set']} | {r['method']} | {r['n_frames']} | {', '.join(map(str, r.get('downscale', [1])))} | "
                     + " | ".join(cells) + " |")
    wins = table["new_beats_otsu"]
    if wins:
        lines += ["", f"New defaults beat the blurred Otsu on {sum(wins.values())} of {len(wins)} (check, set) pairs"
                  + ("" if all(wins.values()) else "; not on: " + ", ".join(k for k, v in wins.items() if not v))]
        kind = {r["set"]: r.get("kind", SET_KIND.get(r["set"], "lines")) for r in table["rows"]}
        rows = {(r["set"], r["method"]): r for r in table["rows"]}
        unresolved = []
        for key in wins:
            c, s = key.split("@")
            f = (floors or {}).get(kind[s], {}).get(c, float("nan"))
            if all(rows[(s, m)][c] < f for m in ("new defaults", "blurred otsu")):
                unresolved.append(f"{key} (floor {f:.3f})")
        if unresolved:
            lines.append("Not resolved (both below the true masks' own value on simulated frames): "
                         + ", ".join(unresolved))
    return "\n".join(lines)


def write_report(path, table: dict, validation: dict | None = None) -> Path:
    """The table and validation as JSON (masks left out), written atomically."""
    from semlab import io

    doc = {"validation": validation, "rows": table["rows"], "new_beats_otsu": table["new_beats_otsu"],
           "kept": table["kept"]}
    return io.write_json_atomic(path, doc)
