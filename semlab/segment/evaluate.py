"""Score segmented masks against ground truth (simulated data) and calibrate edges."""

from __future__ import annotations

import numpy as np

from semlab import labels
from semlab.data.datasets import load_dataset
from semlab.segment.canonical import CanonicalRules, calibrate_edge_offset

STRUCTURE = ("background", "pattern", "hole")


def score_against_truth(seg_root, truth_root, split: str = "test") -> dict:
    """Per-class IoU of the segmented dataset's masks against the truth dataset's masks
    on one split, aggregated over all its pixels (the standard definition), plus the
    mean over the classes present, the mean over the structure classes (background,
    pattern, hole), the frequency-weighted IoU and each image's own mean IoU.
    Items the QA excluded are counted in `n_excluded`, not scored."""
    seg, truth = load_dataset(seg_root), load_dataset(truth_root)
    usable = set(seg.ids)
    ids = [i for i in truth.split(split) if i in usable]
    excluded = [i for i in truth.split(split) if i not in usable]
    k = labels.NUM_CLASSES
    inter, union, freq = np.zeros(k), np.zeros(k), np.zeros(k)
    per_image = []
    for i in ids:
        p, t = seg.mask(i), truth.mask(i)
        ious = []
        for c in range(k):
            a, b = p == c, t == c
            ii, uu = float((a & b).sum()), float((a | b).sum())
            inter[c] += ii
            union[c] += uu
            freq[c] += float(b.sum())
            if uu:
                ious.append(ii / uu)
        per_image.append((i, float(np.mean(ious)) if ious else float("nan")))
    per_class = {c.name: (float(inter[c.id] / union[c.id]) if union[c.id] else float("nan")) for c in labels.CLASSES}
    present = [c.name for c in labels.CLASSES if freq[c.id] > 0]
    struct = [n for n in STRUCTURE if n in present]
    fw = float((freq * np.where(union > 0, inter / np.maximum(union, 1), 0)).sum() / max(freq.sum(), 1))
    return {"split": split, "n": len(ids), "n_excluded": len(excluded),
            "per_class": per_class,
            "mean_iou": float(np.mean([per_class[n] for n in present])) if present else float("nan"),
            "mean_iou_structure": float(np.mean([per_class[n] for n in struct])) if struct else float("nan"),
            "frequency_weighted_iou": fw,
            "true_pixel_fraction": {c.name: float(freq[c.id] / max(freq.sum(), 1)) for c in labels.CLASSES},
            "per_image": sorted(per_image, key=lambda x: x[1])}


def calibrate_on_dataset(truth_root, segmenter, rules: CanonicalRules, split: str = "train",
                         n: int = 16, apply: bool = True) -> tuple[float, dict]:
    """Fit the edge offset on `n` labelled images of a split (never the test split).

    With `apply`, the offset is set where it acts: the classical segmenter's sub-pixel
    `settings.edge_offset_px`, or else `rules.edge_offset_px`."""
    ds = load_dataset(truth_root)
    ids = ds.split(split)[:n]
    if not ids:
        raise ValueError(f"{truth_root}: no images in split {split!r} to calibrate on")
    pairs = ((ds.image(i), ds.mask(i)) for i in ids)
    best, scores = calibrate_edge_offset(pairs, rules, segmenter)
    if apply:
        if hasattr(segmenter, "segment_prepared"):
            segmenter.settings.edge_offset_px = best
        else:
            rules.edge_offset_px = best
    return best, scores
