"""Score segmented masks against ground truth (simulated data) and calibrate edges."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

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


# ------------------------------------------------------------------ scores with CIs (issue 19)


def _pairs(seg_root, truth_root, split: str):
    seg, truth = load_dataset(seg_root), load_dataset(truth_root)
    usable = set(seg.ids)
    return seg, truth, [i for i in truth.split(split) if i in usable]


def class_iou_cis(seg_root, truth_root, split: str = "test", n_boot: int = 1000, level: float = 0.95,
                  seed: int = 0) -> dict:
    """Per-class pixel IoU pooled over a split (as `score_against_truth`) with percentile
    bootstrap CIs resampling whole images, and the same for the mean over the structure
    classes present: {name: (value, ci_low, ci_high)}, plus "n"."""
    seg, truth, ids = _pairs(seg_root, truth_root, split)
    k = labels.NUM_CLASSES
    inter, union, freq = np.zeros((len(ids), k)), np.zeros((len(ids), k)), np.zeros(k)
    for n, i in enumerate(ids):
        p, t = seg.mask(i), truth.mask(i)
        for c in range(k):
            a, b = p == c, t == c
            inter[n, c], union[n, c] = (a & b).sum(), (a | b).sum()
            freq[c] += b.sum()
    out: dict = {"n": len(ids)}
    if not ids:
        return out
    idx = np.random.default_rng(seed).integers(0, len(ids), size=(n_boot, len(ids)))
    with np.errstate(invalid="ignore", divide="ignore"):
        value = inter.sum(0) / union.sum(0)
        boot = inter[idx].sum(1) / union[idx].sum(1)
    q = ((1 - level) / 2, 1 - (1 - level) / 2)
    struct = [c.id for c in labels.CLASSES if c.name in STRUCTURE and freq[c.id] > 0]
    for c in labels.CLASSES:
        if freq[c.id] > 0:
            lo, hi = np.nanquantile(boot[:, c.id], q)
            out[c.name] = (float(value[c.id]), float(min(lo, value[c.id])), float(max(hi, value[c.id])))
    if struct:
        v = float(np.mean(value[struct]))
        lo, hi = np.nanquantile(np.nanmean(boot[:, struct], axis=1), q)
        out["structure"] = (v, float(min(lo, v)), float(max(hi, v)))
    return out


def object_matches(seg_root, truth_root, split: str = "test", cls: str = "defect", instances: bool = False):
    """One-to-one object matches (`semlab.metrics.objects.match_objects`) of class `cls`
    per image of a split. Objects are connected components (8-neighbours), except with
    `instances`: true objects are the simulated particles (`params["particles"]`, so two
    touching particles are two objects) and predicted ones the backend's regions
    (`segments/`), so a watershed split counts."""
    from semlab.data.particles import particle_instances
    from semlab.metrics.objects import label_objects, match_objects
    from semlab.segment.pipeline import read_regions

    c = labels.class_by_name(cls).id
    seg, truth, ids = _pairs(seg_root, truth_root, split)
    out = []
    for i in ids:
        p, t = seg.mask(i) == c, truth.mask(i)
        if instances and truth.params(i).get("particles") is not None:
            tl = particle_instances(t, truth.params(i)["particles"], pattern=c)
            regions = seg.root / "segments" / f"{i}.png"
            pl = np.where(p, read_regions(regions) + 1, 0) if regions.is_file() else label_objects(p)
        else:
            tl, pl = label_objects(t == c), label_objects(p)
        out.append(match_objects(tl, pl))
    return out


def best_threshold_region(img: np.ndarray, truth: np.ndarray, window: np.ndarray, core: np.ndarray,
                          levels: int | None = 48) -> tuple[int, int]:
    """(intersection, union) of the best single-threshold region in `window` that
    touches `core`, over `levels` thresholds spread over the window's values (None: every
    value present in the window, exact and slower)."""
    best = (0, int(truth.sum()))
    vals = img[window]
    grid = np.unique(vals) if levels is None else np.unique(np.quantile(vals, np.linspace(0, 1, levels)))
    for t in grid:
        reg = (img >= t) & window
        lab, _ = ndi.label(reg)
        hit = np.unique(lab[core & reg])
        hit = hit[hit > 0]
        if not len(hit):
            continue
        p = np.isin(lab, hit)
        ii, uu = int((p & truth).sum()), int((p | truth).sum())
        if ii * best[1] > best[0] * uu:
            best = (ii, uu)
    return best


def defect_oracle(truth_root, segmenter, split: str = "test", n_boot: int = 1000, level: float = 0.95,
                  seed: int = 0, min_iou: float = 0.3, max_images: int | None = None) -> dict:
    """The ceiling of issue 3 for particles (defects): an oracle told where each true
    particle is picks the single best threshold for it on the denoised image (the
    segmenter's `prepare`), in a disc of radius r + 4 px around it. Returns its pooled
    pixel IoU and its object recall (share of particles it delineates with IoU >=
    `min_iou`), each (value, ci_low, ci_high) with images resampled, and n particles.
    `max_images`: only the first images of the split that hold particles (time)."""
    truth = load_dataset(truth_root)
    if not hasattr(segmenter, "prepare"):  # SAM2: the oracle works on the classical denoised image
        from semlab.segment.classical import ClassicalSegmenter

        segmenter = ClassicalSegmenter()
    per_image = []
    for i in truth.split(split):
        if max_images is not None and len(per_image) >= max_images:
            break
        t = truth.mask(i)
        comp, n = ndi.label(t == labels.DEFECT, structure=np.ones((3, 3)))
        if n == 0:
            continue
        den = segmenter.prepare(truth.image(i))
        h, w = t.shape
        rows = []
        for j, sl in enumerate(ndi.find_objects(comp), start=1):
            pad = 8
            box = tuple(slice(max(s.start - pad, 0), min(s.stop + pad, m)) for s, m in zip(sl, (h, w)))
            tj = comp[box] == j
            r = math.sqrt(tj.sum() / math.pi)
            cy, cx = np.argwhere(tj).mean(0)
            yy, xx = np.mgrid[:tj.shape[0], :tj.shape[1]]
            rho = np.hypot(yy - cy, xx - cx)
            core = tj & (rho <= max(1.0, 0.5 * r))
            rows.append(best_threshold_region(den[box], tj, rho <= r + 4, core if core.any() else tj))
        per_image.append(rows)
    if not per_image:
        return {"n": 0}
    iu = np.array([[sum(a for a, _ in r), sum(b for _, b in r)] for r in per_image], np.float64)
    found = np.array([[sum(a / b >= min_iou for a, b in r if b), len(r)] for r in per_image], np.float64)
    idx = np.random.default_rng(seed).integers(0, len(per_image), size=(n_boot, len(per_image)))
    q = ((1 - level) / 2, 1 - (1 - level) / 2)
    out: dict = {"n": int(found[:, 1].sum()), "n_images": len(per_image)}
    for name, arr in (("iou", iu), ("object_recall", found)):
        v = float(arr[:, 0].sum() / arr[:, 1].sum())
        b = arr[idx].sum(1)
        lo, hi = np.quantile(b[:, 0] / b[:, 1], q)
        out[name] = (v, float(min(lo, v)), float(max(hi, v)))
    return out
