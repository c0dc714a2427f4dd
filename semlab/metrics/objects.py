"""Object-level detection scores: objects (particles, defects) counted one to one, the
way inspection tools count them.

Pixel IoU is the wrong yardstick for objects a few pixels across: one pixel of edge
placement is a third of a 3-px particle. Here each object is a connected component (or
an instance label), and predicted and true objects are matched **one to one**:

- the IoU of every (true, predicted) pair comes from one joint histogram of the two
  label images;
- a pair can match only with IoU >= `min_iou` (0.3 by default);
- among the valid pairs, the assignment with the most matches (ties: the largest total
  IoU) is found with the Hungarian algorithm (`scipy.optimize.linear_sum_assignment`)
  on the weight `K + IoU` for valid pairs and 0 otherwise, with K larger than any
  possible number of matches, so the count dominates. One prediction covering two true
  objects therefore matches only one of them; the other is a miss.

From the matches of a set of images: precision, recall and F1 (pooled counts), with
percentile-bootstrap CIs that resample whole images; the size error of the matched
objects (equivalent radius, predicted minus true, px); and a per-size table that bins
true objects (and unmatched predictions) by their equivalent radius.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment

__all__ = ["MIN_IOU", "ImageMatch", "label_objects", "iou_matrix", "match_objects", "detection_scores",
           "size_table", "RADIUS_BINS_PX"]

MIN_IOU = 0.3
RADIUS_BINS_PX = (0.0, 2.0, 3.0, 5.0, 8.0, 12.0, math.inf)


@dataclass
class ImageMatch:
    """The one-to-one matching of one image. Radii are equivalent radii sqrt(area/pi) in px."""

    true_radius: np.ndarray  # (n_true,)
    pred_radius: np.ndarray  # (n_pred,)
    pairs: list[tuple[int, int, float]] = field(default_factory=list)  # (true index, pred index, IoU)

    @property
    def n_true(self) -> int:
        return len(self.true_radius)

    @property
    def n_pred(self) -> int:
        return len(self.pred_radius)

    @property
    def n_matched(self) -> int:
        return len(self.pairs)


def label_objects(mask: np.ndarray, connectivity: int = 2) -> np.ndarray:
    """Connected components of a boolean mask as an int32 label image (0 = none);
    `connectivity` 1 (4-neighbours) or 2 (8-neighbours, default)."""
    m = np.asarray(mask, bool)
    if m.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {m.shape}")
    lab, _ = ndi.label(m, structure=ndi.generate_binary_structure(2, connectivity))
    return lab.astype(np.int32)


def _compact(lab: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels renumbered 1..n in order of their original value (0 stays 0)."""
    ids, inv = np.unique(lab, return_inverse=True)
    inv = inv.reshape(lab.shape)
    if ids[0] == 0:
        return inv.astype(np.int64), len(ids) - 1
    return inv.astype(np.int64) + 1, len(ids)


def iou_matrix(true_lab: np.ndarray, pred_lab: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(IoU (n_true, n_pred), true areas, predicted areas) of two instance label images
    of one shape (0 = no object; any other values, renumbered in sorted order)."""
    t, p = np.asarray(true_lab), np.asarray(pred_lab)
    if t.shape != p.shape:
        raise ValueError(f"true labels {t.shape} and predicted labels {p.shape} differ in shape")
    t, nt = _compact(t)
    p, np_ = _compact(p)
    joint = np.bincount((t * (np_ + 1) + p).ravel(), minlength=(nt + 1) * (np_ + 1)).reshape(nt + 1, np_ + 1)
    inter = joint[1:, 1:].astype(np.float64)
    at, ap = joint[1:, :].sum(1).astype(np.float64), joint[:, 1:].sum(0).astype(np.float64)
    union = at[:, None] + ap[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou, at, ap


def match_objects(true_lab: np.ndarray, pred_lab: np.ndarray, min_iou: float = MIN_IOU) -> ImageMatch:
    """One-to-one matching of one image's true and predicted objects (module docstring).
    Pass label images; for boolean masks use `label_objects` first."""
    if not 0 < min_iou <= 1:
        raise ValueError(f"min_iou must be in (0, 1], got {min_iou}")
    iou, at, ap = iou_matrix(true_lab, pred_lab)
    out = ImageMatch(np.sqrt(at / math.pi), np.sqrt(ap / math.pi))
    if iou.size == 0:
        return out
    valid = iou >= min_iou
    if not valid.any():
        return out
    k = min(iou.shape) + 1.0
    weight = np.where(valid, k + iou, 0.0)
    rows, cols = linear_sum_assignment(weight, maximize=True)
    out.pairs = [(int(r), int(c), float(iou[r, c])) for r, c in zip(rows, cols) if valid[r, c]]
    return out


def _counts(matches: list[ImageMatch], lo: float = 0.0, hi: float = math.inf) -> np.ndarray:
    """Per image (tp, fp, fn) for true objects with radius in [lo, hi): a match counts
    when its true object is in the range, a miss when the missed true object is, a false
    positive when the unmatched prediction's own radius is."""
    out = np.zeros((len(matches), 3), np.int64)
    for i, m in enumerate(matches):
        t_in = (m.true_radius >= lo) & (m.true_radius < hi)
        p_in = (m.pred_radius >= lo) & (m.pred_radius < hi)
        mt = np.zeros(m.n_true, bool)
        mp = np.zeros(m.n_pred, bool)
        for a, b, _ in m.pairs:
            mt[a], mp[b] = True, True
        out[i] = (int((mt & t_in).sum()), int((~mp & p_in).sum()), int((~mt & t_in).sum()))
    return out


def _prf(c: np.ndarray) -> np.ndarray:
    """Precision, recall, F1 from pooled (tp, fp, fn) along the last axis (NaN when undefined)."""
    tp, fp, fn = (c[..., i].astype(np.float64) for i in range(3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack([tp / (tp + fp), tp / (tp + fn), 2 * tp / (2 * tp + fp + fn)], axis=-1)


def _boot_idx(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _ci(samples: np.ndarray, level: float) -> tuple[float, float]:
    s = samples[np.isfinite(samples)]
    if not len(s):
        return float("nan"), float("nan")
    q = (1 - level) / 2
    lo, hi = np.quantile(s, [q, 1 - q])
    return float(lo), float(hi)


def _scores(counts: np.ndarray, idx: np.ndarray, level: float) -> dict:
    value = _prf(counts.sum(0))
    boot = _prf(counts[idx].sum(1))
    out = {}
    for j, name in enumerate(("precision", "recall", "f1")):
        lo, hi = _ci(boot[:, j], level)
        v = float(value[j])
        if math.isfinite(v) and math.isfinite(lo):
            lo, hi = min(lo, v), max(hi, v)
        out[name] = {"value": v, "ci_low": lo, "ci_high": hi}
    tp, fp, fn = (int(x) for x in counts.sum(0))
    out.update(n_images=len(counts), n_true=tp + fn, n_pred=tp + fp, n_matched=tp)
    return out


def _radius_errors(matches: list[ImageMatch], lo: float = 0.0, hi: float = math.inf) -> list[np.ndarray]:
    return [np.array([m.pred_radius[b] - m.true_radius[a] for a, b, _ in m.pairs
                      if lo <= m.true_radius[a] < hi], np.float64) for m in matches]


def _size_error(errs: list[np.ndarray], idx: np.ndarray, level: float) -> dict:
    """Mean and mean absolute radius error of matched objects, bootstrapped over images."""
    sums = np.array([[e.sum(), np.abs(e).sum(), len(e)] for e in errs], np.float64).reshape(-1, 3)
    tot = sums.sum(0)
    out = {"n_matched": int(tot[2])}
    b = sums[idx].sum(1)
    for j, name in ((0, "radius_error_px"), (1, "radius_abs_error_px")):
        v = float(tot[j] / tot[2]) if tot[2] else float("nan")
        with np.errstate(invalid="ignore", divide="ignore"):
            lo, hi = _ci(b[:, j] / b[:, 2], level)
        if math.isfinite(v) and math.isfinite(lo):
            lo, hi = min(lo, v), max(hi, v)
        out[name] = {"value": v, "ci_low": lo, "ci_high": hi}
    return out


def detection_scores(matches: list[ImageMatch], *, min_radius_px: float = 0.0, n_boot: int = 1000,
                     level: float = 0.95, seed: int = 0) -> dict:
    """Precision, recall and F1 pooled over images (each {value, ci_low, ci_high}, CIs by
    a percentile bootstrap over images), counts, and the size error of the matched
    objects (equivalent radius, predicted minus true, px; also its absolute value).
    `min_radius_px` keeps only true objects and unmatched predictions at least that large."""
    if not matches:
        raise ValueError("no images to score")
    idx = _boot_idx(len(matches), n_boot, seed)
    out = _scores(_counts(matches, min_radius_px), idx, level)
    out["size"] = _size_error(_radius_errors(matches, min_radius_px), idx, level)
    out["min_radius_px"] = float(min_radius_px)
    return out


def size_table(matches: list[ImageMatch], bins: tuple[float, ...] = RADIUS_BINS_PX, *, n_boot: int = 1000,
               level: float = 0.95, seed: int = 0) -> list[dict]:
    """One row per radius bin [lo, hi) holding objects: `bin`, the counts, precision,
    recall and F1 with CIs, and the radius error of the bin's matched objects."""
    if not matches:
        raise ValueError("no images to score")
    idx = _boot_idx(len(matches), n_boot, seed)
    rows = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        counts = _counts(matches, lo, hi)
        if not counts.sum():
            continue
        row = {"bin": f"{lo:g}-{hi:g} px" if math.isfinite(hi) else f">= {lo:g} px", "lo": lo, "hi": hi}
        row.update(_scores(counts, idx, level))
        row["size"] = _size_error(_radius_errors(matches, lo, hi), idx, level)
        rows.append(row)
    return rows
