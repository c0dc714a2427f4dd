"""Mask QA: per-image statistics and the rules that flag a mask as unusable.

A flagged mask stays on disk (so a person can look at it) but the manifest marks it
`status=flagged` with the reason, and `semlab.data.datasets.Dataset` leaves it out of
its splits, so nothing downstream trains on it.

Bad *input* is flagged too, before anyone trusts its mask (`input_checks`, run by
`semlab.segment.pipeline.segment_image`; the batch goes on):

- **no edges**: after removing a smooth trend (a least-squares polynomial of degree 2:
  a constant, a ramp, a vignette) and a light blur, the frame's spread (1st to 99th
  percentile) is below `min_edge_contrast` (a constant frame cannot be segmented at
  all: it is recorded with `status=error` by `check_image`);
- **pure noise**: that spread is under `min_structure_to_noise` times what white noise
  of the frame's own noise level gives (`white_noise_sigma`; pure white noise scores
  1.0, the simulated presets 2.4-30 at 64-256 px, the packaged real frames 6-190);
- **uncropped data bar**: `semlab.data.sources.detect_databar` finds a burned-in data
  bar at the bottom (its text and rules would be segmented as structures): crop it
  (`semlab import-images` does) or segment `image[:row]`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi

from semlab import labels


@dataclass
class QARules:
    min_pattern_frac: float = 0.02  # less pattern than this: nothing found
    max_pattern_frac: float = 0.98  # more: everything merged into pattern
    max_unlabeled_frac: float = 0.25  # SAM2: too much of the image in no mask
    max_fragments_per_mpx: float = 2000.0  # pattern pieces per megapixel: a shattered mask...
    min_fragments_limit: int = 50  # ...but never flag fewer pieces than this (small images)
    max_speck_frac: float = 0.5  # share of pattern pieces smaller than 9 px
    min_edge_contrast: float = 0.02  # input: detrended, blurred spread below this: no edges
    min_structure_to_noise: float = 1.5  # input: spread / white noise's spread below this: pure noise
    check_databar: bool = True  # input: flag an uncropped data bar

    def describe(self) -> dict:
        return asdict(self)


QA_FIELDS = ("status", "reason", "input_contrast", "structure_to_noise", "databar_row", "coverage_background", "coverage_pattern", "coverage_hole",
             "coverage_defect", "fragments_pattern", "fragments_hole", "fragments_defect",
             "unlabeled_frac", "n_segments")


def mask_stats(mask: np.ndarray) -> dict:
    """Coverage (fraction of pixels) and number of connected pieces per class."""
    n = mask.size
    out = {}
    counts = np.bincount(mask.ravel(), minlength=labels.NUM_CLASSES)
    for c in labels.CLASSES:
        out[f"coverage_{c.name}"] = round(float(counts[c.id]) / n, 5)
    for c in (labels.PATTERN, labels.HOLE, labels.DEFECT):
        _, k = ndi.label(mask == c)
        out[f"fragments_{labels.CLASSES[c].name}"] = int(k)
    return out


def check_mask(mask: np.ndarray, *, unlabeled_frac: float = 0.0, n_segments: int = 0,
               rules: QARules | None = None) -> dict:
    """QA record for one canonical mask: statistics plus `status` ("ok" or "flagged")
    and `reason` (all reasons, separated by "; ")."""
    rules = rules or QARules()
    st = mask_stats(mask)
    st["unlabeled_frac"] = round(float(unlabeled_frac), 5)
    st["n_segments"] = int(n_segments)
    reasons = []
    pat = st["coverage_pattern"]
    if pat < rules.min_pattern_frac:
        reasons.append(f"pattern covers {pat:.1%} < {rules.min_pattern_frac:.0%}: no structure found")
    if pat > rules.max_pattern_frac:
        reasons.append(f"pattern covers {pat:.1%} > {rules.max_pattern_frac:.0%}: everything merged")
    if unlabeled_frac > rules.max_unlabeled_frac:
        reasons.append(f"{unlabeled_frac:.1%} of pixels in no segment > {rules.max_unlabeled_frac:.0%}")
    mpx = mask.size / 1e6
    frag = st["fragments_pattern"]
    limit = max(rules.max_fragments_per_mpx * mpx, rules.min_fragments_limit)
    if frag > limit:
        reasons.append(f"{frag} pattern pieces > {limit:.0f} for this size: shattered")
    if frag >= 10:
        lab, k = ndi.label(mask == labels.PATTERN)
        sizes = np.bincount(lab.ravel())[1:]
        speck = float((sizes < 9).mean())
        if speck > rules.max_speck_frac:
            reasons.append(f"{speck:.0%} of pattern pieces are specks under 9 px: noisy mask")
    st["status"] = "flagged" if reasons else "ok"
    st["reason"] = "; ".join(reasons)
    return st


# White noise through the blur of `input_checks` (Gaussian sigma 2): its std shrinks by
# 1 / (2 sqrt(pi) sigma), and the 1st-99th percentile spread of a normal is 4.653 std.
_NOISE_SPREAD = 4.653 / (2.0 * np.sqrt(np.pi) * 2.0)


def _detrend(img: np.ndarray, degree: int = 2, step: int = 4) -> np.ndarray:
    """The image minus its least-squares polynomial trend of `degree` (fitted on every
    `step`-th pixel)."""
    h, w = img.shape
    yy, xx = np.mgrid[0:h:step, 0:w:step].astype(np.float64)
    yy, xx = yy / max(h - 1, 1) * 2 - 1, xx / max(w - 1, 1) * 2 - 1
    powers = [(i, j) for i in range(degree + 1) for j in range(degree + 1 - i)]
    a = np.stack([(yy ** i * xx ** j).ravel() for i, j in powers], 1)
    coef, *_ = np.linalg.lstsq(a, img[::step, ::step].ravel().astype(np.float64), rcond=None)
    gy, gx = np.linspace(-1, 1, h), np.linspace(-1, 1, w)
    trend = sum(c * np.outer(gy ** i, gx ** j) for c, (i, j) in zip(coef, powers))
    return img.astype(np.float64) - trend


def input_checks(image: np.ndarray, rules: QARules | None = None) -> dict:
    """Checks of the input frame (see the module docstring): `input_contrast` (spread of
    the detrended, blurred frame), `structure_to_noise` (that spread over white noise's),
    `databar_row` (first row of an uncropped data bar, or "") and `input_reasons` (a list,
    empty when the frame looks segmentable)."""
    from semlab.data.sources import detect_databar
    from semlab.segment.classical import white_noise_sigma

    rules = rules or QARules()
    img = np.asarray(image, np.float64)
    sm = ndi.gaussian_filter(_detrend(img), 2.0)[::2, ::2]  # blurred: every other pixel is enough
    spread = float(np.percentile(sm, 99) - np.percentile(sm, 1))
    noise = white_noise_sigma(img) * _NOISE_SPREAD
    stn = spread / noise if noise > 1e-9 else float("inf")
    reasons = []
    if spread < rules.min_edge_contrast:
        reasons.append(f"no edges: the frame is flat once a smooth trend is removed (spread {spread:.3f} < "
                       f"{rules.min_edge_contrast:g})")
    elif stn < rules.min_structure_to_noise:
        reasons.append(f"pure noise: no structure above the noise (structure-to-noise {stn:.2f} < "
                       f"{rules.min_structure_to_noise:g}; white noise gives 1)")
    bar = detect_databar(np.clip(image, 0, 1)) if rules.check_databar else None
    if bar is not None:
        reasons.append(f"uncropped data bar from row {bar} of {img.shape[0]}: crop it (semlab import-images does) "
                       "or segment image[:{bar}]".replace("{bar}", str(bar)))
    return {"input_contrast": round(spread, 5), "structure_to_noise": round(min(stn, 1e6), 3),
            "databar_row": "" if bar is None else int(bar), "input_reasons": reasons}


def add_input_flags(qa: dict, checks: dict) -> dict:
    """Merge `input_checks` into a mask's QA record: its numbers become columns, and any
    input reason flags the mask (input reasons first)."""
    reasons = list(checks.get("input_reasons", []))
    qa.update({k: v for k, v in checks.items() if k != "input_reasons"})
    if reasons:
        qa["reason"] = "; ".join(reasons + ([qa["reason"]] if qa.get("reason") else []))
        qa["status"] = "flagged"
    return qa
