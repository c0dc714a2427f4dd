"""Scoring the downstream segmenter's masks.

- **Structure classes** (background, pattern, hole, as present in the test masks):
  per-class IoU = TP / (TP + FP + FN) and Dice = 2 TP / (2 TP + FP + FN) from the
  confusion matrix pooled over all test pixels (the same numbers as scikit-learn's
  `jaccard_score` / `f1_score` with `average=None` on the flattened masks), and their
  mean, mIoU. 95% CIs: a percentile bootstrap over **tiles** (whole tiles resampled,
  the pooled confusion recomputed); over several seeds, a two-level bootstrap that also
  draws the seeds with replacement (`bootstrap_miou(resample_runs=True)`). Tiles of a few frames share those frames' imaging:
  a CI over them describes those frames only (`semlab.train.realsets.CI_CAVEAT`).
- **Defects** as objects (`semlab.metrics.objects`): one-to-one matching of connected
  components, precision / recall / F1 with bootstrap CIs over tiles.
- **Metrology** (`metrology_differences`): for line/space, CD and unbiased LER measured
  on the predicted mask (pattern = bright) minus the classical sub-pixel measurement on
  the image itself (`semlab.metrology.measure_lines`), in nm, averaged per frame, with a
  bootstrap CI over frames (none with fewer than 2 frames); for contacts the mean
  contact diameter likewise (`measure_contacts`); the pitch of the mask against the FFT
  pitch of the image is a sanity check only (any mask with the right line count passes).
- In the real domain the reference masks come from a classical segmentation: the score is
  **agreement with reference masks**, never accuracy (`metric_name`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from semlab import labels
from semlab.downstream.data import structure_classes

__all__ = ["confusion", "class_scores", "MaskScore", "score_masks", "bootstrap_miou", "bootstrap_miou_difference", "tile_miou",
           "metrology_differences", "metric_name", "N_CLASSES"]

N_CLASSES = labels.NUM_CLASSES


def metric_name(domain_kind: str) -> str:
    """"mIoU" in the simulated domain, "agreement with reference masks (mIoU)" in the real one."""
    return "agreement with reference masks (mIoU)" if domain_kind == "real" else "mIoU"


def confusion(pred: np.ndarray, true: np.ndarray, n_classes: int = N_CLASSES) -> np.ndarray:
    """Per-tile confusion matrices (N, C, C) int64, [tile, true, pred], of label maps (N, H, W)
    (or one (H, W): shape (1, C, C))."""
    p, t = np.asarray(pred), np.asarray(true)
    if p.shape != t.shape:
        raise ValueError(f"predicted masks {p.shape} and reference masks {t.shape} differ in shape")
    if p.ndim == 2:
        p, t = p[None], t[None]
    n = len(p)
    flat = (np.arange(n)[:, None] * n_classes * n_classes + t.reshape(n, -1).astype(np.int64) * n_classes
            + p.reshape(n, -1).astype(np.int64))
    return np.bincount(flat.ravel(), minlength=n * n_classes * n_classes).reshape(n, n_classes, n_classes)


def class_scores(conf: np.ndarray, classes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(IoU, Dice) per class of a pooled confusion matrix (C, C) or a stack (..., C, C);
    a class absent from both reference and prediction scores NaN."""
    c = np.asarray(conf, np.float64)
    idx = list(classes)
    tp = np.diagonal(c, axis1=-2, axis2=-1)[..., idx]
    fn = c.sum(-1)[..., idx] - tp
    fp = c.sum(-2)[..., idx] - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), np.nan)
        dice = np.where(tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    return iou, dice


def tile_miou(confs: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """mIoU of each tile (over `classes`; classes absent from a tile and its prediction are skipped)."""
    iou, _ = class_scores(confs, classes)
    with np.errstate(invalid="ignore"):
        return np.nanmean(iou, axis=-1)


def bootstrap_miou(confs: Sequence[np.ndarray], classes: Sequence[int], *, n_boot: int = 1000, level: float = 0.95,
                   seed: int = 0, resample_runs: bool = False) -> tuple[float, float, float]:
    """(mIoU, ci_low, ci_high) of one or more runs on the same test tiles (`confs`: per-run
    (N, C, C)): the mean over runs of the pooled mIoU, with a percentile bootstrap over tiles
    (the same resampled tiles for every run). With `resample_runs` (several seeds), each
    replicate also draws the runs with replacement (a two-level bootstrap: seeds x test
    tiles), so the CI holds the seed-to-seed spread as well as the test-tile spread."""
    confs = [np.asarray(c) for c in confs]
    n = len(confs[0])
    if any(len(c) != n for c in confs):
        raise ValueError("every run must be scored on the same test tiles")

    def miou(sums):  # sums: (runs, ..., C, C)
        iou, _ = class_scores(sums, classes)
        return np.nanmean(iou, axis=-1)

    value = float(miou(np.stack([c.sum(0) for c in confs])).mean(0))
    if n < 2 or n_boot < 1:
        return value, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    per_run = miou(np.stack([c[idx].sum(1) for c in confs]))  # (runs, n_boot)
    if resample_runs and len(confs) > 1:
        pick = rng.integers(0, len(confs), size=(n_boot, len(confs)))
        boot = per_run[pick, np.arange(n_boot)[:, None]].mean(1)
    else:
        boot = per_run.mean(0)
    q = (1 - level) / 2
    lo, hi = np.quantile(boot, [q, 1 - q])
    return value, float(min(lo, value)), float(max(hi, value))


def bootstrap_miou_difference(confs_a: Sequence[np.ndarray], confs_b: Sequence[np.ndarray], classes: Sequence[int], *,
                              n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(difference, ci_low, ci_high) of the mean pooled mIoU of runs `a` minus runs `b`,
    paired: run i of `a` and of `b` share seed i (and so the same real tiles), and both are
    scored on the same test tiles; each replicate draws the seed indices and the test tiles
    with replacement, the same for both sides (a paired two-level percentile bootstrap)."""
    a = [np.asarray(c) for c in confs_a]
    b = [np.asarray(c) for c in confs_b]
    if len(a) != len(b) or not a:
        raise ValueError(f"a paired difference needs the same seeds on both sides, got {len(a)} and {len(b)} runs")
    n = len(a[0])
    if any(len(c) != n for c in a + b):
        raise ValueError("every run must be scored on the same test tiles")

    def miou(sums):
        iou, _ = class_scores(sums, classes)
        return np.nanmean(iou, axis=-1)

    value = float(miou(np.stack([c.sum(0) for c in a])).mean() - miou(np.stack([c.sum(0) for c in b])).mean())
    if n < 2 or n_boot < 1:
        return value, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    diff = miou(np.stack([c[idx].sum(1) for c in a])) - miou(np.stack([c[idx].sum(1) for c in b]))  # (runs, n_boot)
    if len(a) > 1:
        pick = rng.integers(0, len(a), size=(n_boot, len(a)))
        boot = diff[pick, np.arange(n_boot)[:, None]].mean(1)
    else:
        boot = diff[0]
    q = (1 - level) / 2
    lo, hi = np.quantile(boot, [q, 1 - q])
    return value, float(min(lo, value)), float(max(hi, value))


@dataclass
class MaskScore:
    """Scores of predicted masks against reference masks (module docstring)."""

    classes: tuple[int, ...]
    iou: dict[str, float]
    dice: dict[str, float]
    miou: float
    miou_ci: tuple[float, float]
    n_tiles: int
    n_frames: int
    confusion: np.ndarray = field(repr=False)
    defect: dict | None = None
    metric: str = "mIoU"

    def row(self) -> dict:
        out = {"miou": self.miou, "miou_ci_low": self.miou_ci[0], "miou_ci_high": self.miou_ci[1],
               "n_test_tiles": self.n_tiles, "n_test_frames": self.n_frames}
        out.update({f"{k}_iou": v for k, v in self.iou.items()})
        out.update({f"{k}_dice": v for k, v in self.dice.items()})
        if self.defect is not None:
            out["defect_object_f1"] = self.defect["f1"]["value"]
        return out


def _defects(pred: np.ndarray, true: np.ndarray, n_boot: int, seed: int) -> dict | None:
    from semlab.metrics.objects import detection_scores, label_objects, match_objects

    if not ((true == labels.DEFECT).any() or (pred == labels.DEFECT).any()):
        return None
    matches = [match_objects(label_objects(t == labels.DEFECT), label_objects(p == labels.DEFECT))
               for p, t in zip(pred, true)]
    return detection_scores(matches, n_boot=n_boot, seed=seed)


def score_masks(pred: np.ndarray, true: np.ndarray, *, frames: Sequence[str] | None = None,
                classes: Sequence[int] | None = None, n_boot: int = 1000, seed: int = 0,
                domain_kind: str = "sim") -> MaskScore:
    """Score predicted label maps (N, H, W) against reference ones: per-class IoU and
    Dice over the structure classes present in `true` (or `classes`), mIoU with a
    bootstrap CI over tiles, and defects as objects when any are present."""
    true = np.asarray(true)
    pred = np.asarray(pred)
    classes = tuple(structure_classes(true) if classes is None else classes)
    if not classes:
        raise ValueError("the reference masks hold no structure class (background, pattern or hole)")
    conf = confusion(pred, true)
    iou, dice = class_scores(conf.sum(0), classes)
    value, lo, hi = bootstrap_miou([conf], classes, n_boot=n_boot, seed=seed)
    names = [labels.CLASSES[c].name for c in classes]
    return MaskScore(classes, dict(zip(names, map(float, iou))), dict(zip(names, map(float, dice))), value, (lo, hi),
                     len(true), len(set(frames)) if frames is not None else len(true), conf,
                     _defects(pred, true, n_boot, seed), metric_name(domain_kind))


# ------------------------------------------------------------------------- metrology


def _frame_ci(per_frame: dict[str, list[float]], n_boot: int, seed: int) -> dict:
    means = np.array([np.mean(v) for v in per_frame.values() if v])
    if not len(means):
        return {"value": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n_frames": 0, "n_tiles": 0}
    out = {"value": float(means.mean()), "ci_low": float("nan"), "ci_high": float("nan"), "n_frames": len(means),
           "n_tiles": int(sum(len(v) for v in per_frame.values()))}
    rng = np.random.default_rng(seed)
    if len(means) >= 2:
        boot = means[rng.integers(0, len(means), size=(n_boot, len(means)))].mean(1)
        out["ci_over"] = "frames"
    else:  # one frame: a CI over its tiles describes that frame only
        tiles = np.asarray(next(v for v in per_frame.values() if v), np.float64)
        if len(tiles) < 2:
            out["note"] = "one tile of one frame: no CI"
            return out
        boot = tiles[rng.integers(0, len(tiles), size=(n_boot, len(tiles)))].mean(1)
        out["ci_over"] = "tiles of one frame (describes that frame only; no CI over frames)"
    lo, hi = np.quantile(boot, [0.025, 0.975])
    out["ci_low"], out["ci_high"] = float(min(lo, out["value"])), float(max(hi, out["value"]))
    return out


def _lines(img: np.ndarray, mask: np.ndarray) -> dict[str, float] | None:
    from semlab.metrology import measure_lines

    try:
        ref = measure_lines(img.astype(np.float32) / 255.0)
        pm = measure_lines((mask == labels.PATTERN).astype(np.float32), polarity="bright", smooth_px=0.0,
                           threshold=0.5)
    except (ValueError, IndexError):
        return None
    if ref.n_lines != pm.n_lines:
        return None
    return {"cd": pm.cd - ref.cd, "ler": pm.ler_3sigma - ref.ler_3sigma, "pitch_mask": pm.pitch,
            "pitch_fft": ref.pitch}


def _contacts(img: np.ndarray, mask: np.ndarray) -> dict[str, float] | None:
    from semlab.metrology import measure_contacts

    ref = measure_contacts(img.astype(np.float32) / 255.0, polarity="dark")
    pm = measure_contacts((mask == labels.HOLE).astype(np.float32), polarity="bright", smooth_px=0.0, threshold=0.5)
    if not ref.contacts or not pm.contacts:
        return None
    return {"diameter": pm.diameter - ref.diameter}


def metrology_differences(images: np.ndarray, pred: np.ndarray, frames: Sequence[str], *, layout: str,
                          pixel_nm: float | None, n_boot: int = 1000, seed: int = 0) -> dict:
    """Metrology from the predicted masks minus the classical sub-pixel measurement on the
    images (module docstring), in nm (px when `pixel_nm` is None): {"cd"|"ler"|"diameter":
    {value, ci_low, ci_high, n_frames, n_tiles}, "pitch_check": {...}, "unit", "n_skipped"}.
    Tiles where either measurement fails, or the line counts differ, are skipped (counted)."""
    if layout not in ("lines", "contacts"):
        return {}
    scale = float(pixel_nm) if pixel_nm else 1.0
    per: dict[str, dict[str, list[float]]] = {}
    pitch_ok, skipped = [], 0
    for img, m, f in zip(images, pred, frames):
        d = _lines(img, m) if layout == "lines" else _contacts(img, m)
        if d is None or not all(math.isfinite(v) for v in d.values()):
            skipped += 1
            continue
        if layout == "lines":
            pm, pf = d.pop("pitch_mask"), d.pop("pitch_fft")
            pitch_ok.append(abs(pm - pf) / pf)
        for k, v in d.items():
            per.setdefault(k, {}).setdefault(f, []).append(v * scale)
    out: dict = {k: _frame_ci(v, n_boot, seed) for k, v in per.items()}
    if pitch_ok:  # a sanity check only: any mask with the right line count passes it
        rel = np.asarray(pitch_ok)
        out["pitch_check"] = {"median_rel_diff": float(np.median(rel)), "share_within_5pct": float((rel <= 0.05).mean()),
                              "n_tiles": len(rel)}
    out["unit"] = "nm" if pixel_nm else "px"
    out["n_skipped"] = skipped
    return out
