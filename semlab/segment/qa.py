"""Mask QA: per-image statistics and the rules that flag a mask as unusable.

A flagged mask stays on disk (so a person can look at it) but the manifest marks it
`status=flagged` with the reason, and `semlab.data.datasets.Dataset` leaves it out of
its splits, so nothing downstream trains on it.
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

    def describe(self) -> dict:
        return asdict(self)


QA_FIELDS = ("status", "reason", "coverage_background", "coverage_pattern", "coverage_hole",
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
