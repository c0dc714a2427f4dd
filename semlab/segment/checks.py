"""Label-free checks of segmentation masks on real frames (issue 19 item 4).

Real SEM frames have no human masks, so masks are judged by physics. Each check is an
*error*: 0 for a perfect mask of an ideal pattern, larger when the mask is worse.

- `pitch`: |pitch of the mask's lines - FFT pitch of the image| / FFT pitch. The
  mask's pitch is the median spacing of consecutive line centres
  (`semlab.metrology.line_edges` on the mask); the image's from its power spectrum
  (`semlab.metrology.fft_pitch`), which needs no segmentation. Line frames only.
- `cd_variation`: the CD (line width) variation along the lines: per line the
  standard deviation of the mask's width along the rows over its mean width, averaged
  over lines. Ragged or broken masks raise it. Line frames only.
- `roundness`: 1 - the mean minor/major axis ratio of the contacts (the minority phase's
  components clear of the frame: holes, or pillars). Contact frames only.
- `diameter_variation`: standard deviation over mean of the contacts' equivalent
  diameters. Contact frames only.
- `fraction_variation`: frame-to-frame variation of the pattern fraction over the
  frames of one set (standard deviation over mean): frames of one pattern should have
  one pattern fraction. A set-level check.

**Validated first** (`validate_checks`): on simulated frames with exact truth, the
segmenter is run with settings degraded on purpose (thresholds off, edge offsets,
too much or no smoothing, blurred global Otsu) and for each check the Spearman rank
correlation (`scipy.stats.spearmanr`) of the *negated* check (higher = better) with the
true mean structure IoU over those settings is reported. Checks with rho >= 0.5 are
kept (`KEEP_RHO`); only they go into the real table (`real_check_table`), which has rows
for the old defaults (ALGORITHM_VERSION 2: fixed denoising strength 0.8, no illumination
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
LINE_CHECKS = ("pitch", "cd_variation")
CONTACT_CHECKS = ("roundness", "diameter_variation")
SET_CHECKS = ("fraction_variation",)
CHECKS = LINE_CHECKS + CONTACT_CHECKS + SET_CHECKS
METHODS = ("old defaults", "new defaults", "blurred otsu")
# the segmenter of ALGORITHM_VERSION 2 (see semlab.segment.pipeline): what changed in 3
OLD_DEFAULTS = {"denoise_strength": 0.8, "flatten_degree": 0}
# settings degraded on purpose, for the validation on simulated truth
DEGRADED: dict[str, dict] = {
    "new defaults": {},
    "old defaults": OLD_DEFAULTS,
    "li threshold": {"threshold": "li"},
    "multi-otsu (low level)": {"threshold": "multiotsu"},
    "edge offset -1.5 px": {"edge_offset_px": -1.5},
    "edge offset +1.5 px": {"edge_offset_px": 1.5},
    "edge offset +3 px": {"edge_offset_px": 3.0},
    "no denoising": {"denoise": "none", "min_area_px": 2},
    "gaussian 3 px": {"denoise": "gaussian", "smooth_px": 3.0},
    "blurred otsu": None,  # not the classical segmenter: `blurred_otsu`
}


# ---------------------------------------------------------------------------- masks


def blurred_otsu(image: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """The baseline: pattern (1) where the Gaussian-blurred image is above its Otsu
    threshold, background (0) elsewhere."""
    from skimage.filters import gaussian, threshold_otsu

    sm = gaussian(np.asarray(image, np.float32), sigma)
    return (sm > threshold_otsu(sm)).astype(np.uint8) * labels.PATTERN


def segment_with(image: np.ndarray, method, source: str | None = None) -> np.ndarray:
    """Canonical mask of one frame by a method name of `METHODS`, or a dict of classical
    settings (the new defaults' rules: polarity per frame)."""
    from semlab.segment.canonical import CanonicalRules
    from semlab.segment.pipeline import make_segmenter, segment_image

    if method == "blurred otsu" or (method is None):
        return blurred_otsu(image)
    if method == "new defaults":
        method = {}
    if method == "old defaults":
        return segment_image(image, make_segmenter("classical", **OLD_DEFAULTS), CanonicalRules(polarity="bright"),
                             source=source).mask
    if not isinstance(method, dict):
        raise KeyError(f"unknown method {method!r}; valid: {', '.join(METHODS)} or a dict of classical settings")
    return segment_image(image, make_segmenter("classical", **method), CanonicalRules(polarity="auto"),
                         source=source).mask


def pattern_of(mask: np.ndarray) -> np.ndarray:
    """The bright structure of a canonical mask: pattern plus defects on it."""
    return (mask == labels.PATTERN) | (mask == labels.DEFECT)


# ---------------------------------------------------------------------------- checks


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


def frame_checks(image: np.ndarray, mask: np.ndarray, kind: str) -> dict[str, float]:
    """The per-frame checks of a frame of `kind` ("lines" or "contacts") and its mask,
    plus its pattern fraction."""
    pat = pattern_of(mask)
    out = {"pattern_fraction": float(pat.mean())}
    if kind == "lines":
        out.update(pitch=pitch_error(image, pat), cd_variation=cd_variation(pat))
    elif kind == "contacts":
        out.update(roundness=roundness_error(pat), diameter_variation=diameter_variation(pat))
    else:
        raise ValueError(f"kind must be 'lines' or 'contacts', got {kind!r}")
    return out


# ---------------------------------------------------------------------------- validation


PRESET_KIND = {"line-space": "lines", "contacts": "contacts"}


def _structure_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean IoU over the structure classes present in the truth. A binary mask (the
    Otsu baseline) is compared as pattern vs the rest."""
    if pred.max() <= labels.PATTERN and truth.max() > labels.PATTERN:
        truth = np.where(pattern_of(truth), labels.PATTERN, labels.BACKGROUND)
        pred = np.where(pattern_of(pred), labels.PATTERN, labels.BACKGROUND)
    ious = []
    for c in (labels.BACKGROUND, labels.PATTERN, labels.HOLE):
        t, p = truth == c, pred == c
        if t.any():
            ious.append((t & p).sum() / (t | p).sum())
    return float(np.mean(ious))


def validate_checks(presets=("line-space", "contacts"), *, size: int = 128, n_frames: int = 6, seed: int = 0,
                    settings: dict | None = None, progress: bool = True) -> dict:
    """For each preset (and so each check kind), each degraded setting of `settings`
    (default `DEGRADED`): the mean true structure IoU and the mean check values over
    `n_frames` simulated frames; then per check the Spearman rho of -check with IoU over
    the settings, and whether it is kept (rho >= `KEEP_RHO`). Frames are simulated with
    `(seed, i)`; `fraction_variation` is computed over the frames of each setting."""
    from scipy.stats import spearmanr
    from tqdm.auto import tqdm

    from semlab.data.simulate import simulate

    settings = DEGRADED if settings is None else settings
    rows: list[dict] = []
    rho: dict[str, dict] = {}
    for preset in presets:
        kind = PRESET_KIND.get(preset)
        if kind is None:
            raise KeyError(f"no checks for preset {preset!r}; valid: {', '.join(PRESET_KIND)}")
        sims = [simulate(preset, size, (seed, i)) for i in range(n_frames)]
        names = ["blurred otsu" if v is None else k for k, v in settings.items()]
        for name, st in tqdm(list(zip(names, settings.values())), desc=f"validate checks ({preset})",
                             disable=not progress, unit="setting"):
            per = []
            for k, r in enumerate(sims):
                m = segment_with(r.image, "blurred otsu" if st is None else st, source=f"{preset}#{k}")
                per.append({"iou": _structure_iou(m, r.mask), **frame_checks(r.image, m, kind)})
            row = {"preset": preset, "setting": name, "n_frames": n_frames,
                   "iou": float(np.mean([p["iou"] for p in per])),
                   "fraction_variation": fraction_variation(p["pattern_fraction"] for p in per)}
            for c in (LINE_CHECKS if kind == "lines" else CONTACT_CHECKS):
                row[c] = float(np.nanmean([p[c] for p in per])) if any(np.isfinite(p[c]) for p in per) else float("nan")
            rows.append(row)
        sel = [r for r in rows if r["preset"] == preset]
        for c in (LINE_CHECKS if kind == "lines" else CONTACT_CHECKS) + SET_CHECKS:
            x = np.array([-r[c] for r in sel])
            y = np.array([r["iou"] for r in sel])
            ok = np.isfinite(x)
            r_, p_ = spearmanr(x[ok], y[ok]) if ok.sum() >= 3 else (float("nan"), float("nan"))
            rho[f"{c}@{preset}"] = {"check": c, "preset": preset, "rho": float(r_), "p": float(p_),
                                    "n_settings": int(ok.sum()), "kept": bool(np.isfinite(r_) and r_ >= KEEP_RHO)}
    kept = sorted({v["check"] for v in rho.values() if v["kept"]})
    return {"domain": "simulated", "size": size, "n_frames": n_frames, "seed": seed, "rows": rows,
            "rho": rho, "kept": kept, "keep_rho": KEEP_RHO}


# ---------------------------------------------------------------------------- real frames


SET_KIND = {"cdsem-lines": "lines", "litho-lines": "lines", "dsa-lines": "lines", "cdsem-contacts": "contacts"}


@dataclass
class RealCrop:
    set: str
    frame: str
    split: str
    image: np.ndarray
    origin: tuple[int, int]


def real_crops(sets=None, crop: int = 256) -> list[RealCrop]:
    """A centred `crop`-px crop (above the data bar) of every frame of the real sets
    (default: every set of `SET_KIND` present: packaged, or in ../shared)."""
    from semlab import io
    from semlab.data import samples
    from semlab.data.sources import detect_databar

    present = set(samples.list_sets()) | set(samples.shared_sets())
    sets = [s for s in (sets or SET_KIND) if s in present]
    out = []
    for name in sets:
        inf = samples.info(name)
        split = samples.stored_split(name)
        for f in samples.frames(name):
            img = io.read_image(f)
            bar = (inf.get("databar_row") or {}).get(f.name) or detect_databar(img)
            if bar:
                img = img[:bar]
            h, w = img.shape
            c = min(crop, h, w)
            y0, x0 = (h - c) // 2, (w - c) // 2
            out.append(RealCrop(name, f.name, split.get(f.name, ""), np.ascontiguousarray(img[y0:y0 + c, x0:x0 + c]),
                                (y0, x0)))
    return out


def real_check_table(crops: list[RealCrop], kept=CHECKS, methods=METHODS, progress: bool = True) -> dict:
    """Per set and method: the mean of each kept check over the set's crops
    (`fraction_variation` over them), n frames, and whether the new defaults beat the
    blurred Otsu on it (lower is better). Also the masks, for `segcheck_figure`."""
    from tqdm.auto import tqdm

    masks: dict[tuple[str, str], np.ndarray] = {}
    per: dict[tuple[str, str], list[dict]] = {}
    for cr in tqdm(crops, desc="real frames", disable=not progress, unit="frame"):
        kind = SET_KIND.get(cr.set, "lines")
        for m in methods:
            mask = segment_with(cr.image, m, source=f"{cr.set}/{cr.frame}")
            masks[(cr.frame, m)] = mask
            per.setdefault((cr.set, m), []).append(frame_checks(cr.image, mask, kind))
    rows = []
    for (s, m), vals in per.items():
        kind = SET_KIND.get(s, "lines")
        row = {"domain": "real", "set": s, "method": m, "n_frames": len(vals),
               "crop_px": int(crops[0].image.shape[0]) if crops else 0}
        for c in (LINE_CHECKS if kind == "lines" else CONTACT_CHECKS):
            if c in kept:
                v = [x[c] for x in vals if np.isfinite(x[c])]
                row[c] = float(np.mean(v)) if v else float("nan")
        if "fraction_variation" in kept:
            row["fraction_variation"] = fraction_variation(x["pattern_fraction"] for x in vals)
        rows.append(row)
    verdict = {}
    for s in {r["set"] for r in rows}:
        new = next((r for r in rows if r["set"] == s and r["method"] == "new defaults"), None)
        otsu = next((r for r in rows if r["set"] == s and r["method"] == "blurred otsu"), None)
        if new is None or otsu is None:
            continue
        for c in CHECKS:
            if c in new and np.isfinite(new[c]) and np.isfinite(otsu.get(c, float("nan"))):
                verdict[f"{c}@{s}"] = bool(new[c] < otsu[c])
    return {"rows": rows, "new_beats_otsu": verdict, "masks": masks, "kept": list(kept)}


def check_table_markdown(table: dict, validation: dict | None = None) -> str:
    """The real table (and the validation's rho, if given) as Markdown."""
    lines = []
    if validation:
        lines += [f"Validation on simulated truth ({validation['size']} px, {validation['n_frames']} frames per "
                  f"setting, {len({r['setting'] for r in validation['rows']})} settings): Spearman rho of -check "
                  f"with true structure IoU; kept if rho >= {validation['keep_rho']}.", "",
                  "| check | simulated set | rho | p | kept |", "|---|---|---|---|---|"]
        for v in validation["rho"].values():
            lines.append(f"| {v['check']} | {v['preset']} | {v['rho']:.2f} | {v['p']:.3f} | {'yes' if v['kept'] else 'no'} |")
        lines.append("")
    cols = [c for c in CHECKS if any(c in r for r in table["rows"])]
    unvalidated = [c for c in cols if validation is not None and c not in validation["kept"]]
    crop = table["rows"][0].get("crop_px", "") if table["rows"] else ""
    lines += [f"Real frames ({crop}-px crops; lower is better): " + ", ".join(cols)
              + (f". Not validated (rho < {KEEP_RHO} here, shown for information only): " + ", ".join(unvalidated)
                 if unvalidated else ""), "",
              "| set | method | n frames | " + " | ".join(cols) + " |", "|---|---|---|" + "---|" * len(cols)]
    for r in sorted(table["rows"], key=lambda r: (r["set"], METHODS.index(r["method"]) if r["method"] in METHODS else 9)):
        cells = [f"{r[c]:.3f}" if c in r and np.isfinite(r[c]) else "" for c in cols]
        lines.append(f"| {r['set']} | {r['method']} | {r['n_frames']} | " + " | ".join(cells) + " |")
    wins = table["new_beats_otsu"]
    if wins:
        lines += ["", f"New defaults beat the blurred Otsu on {sum(wins.values())} of {len(wins)} (check, set) pairs"
                  + ("" if all(wins.values()) else "; not on: " + ", ".join(k for k, v in wins.items() if not v))]
    return "\n".join(lines)


def write_report(path, table: dict, validation: dict | None = None) -> Path:
    """The table and validation as JSON (masks left out), written atomically."""
    from semlab import io

    doc = {"validation": validation, "rows": table["rows"], "new_beats_otsu": table["new_beats_otsu"],
           "kept": table["kept"]}
    return io.write_json_atomic(path, doc)
