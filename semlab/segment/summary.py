"""Notebook 10's `metrics.json`: what segmenting a dataset produced (usable and excluded
masks, time per image, the fitted edge offset) and, on simulated data, how the masks score
against the simulator's truth (`semlab.segment.evaluate.score_against_truth`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from semlab.metrics import keys as K
from semlab.runs import metric, metrics_doc

__all__ = ["make_dataset_metrics_doc", "seconds_per_image", "qa_summary", "format_score", "fallback_markdown",
           "truth_table_markdown", "size_table_markdown", "real_summary", "one_tile_per_frame"]

NOTEBOOK = "10_make_dataset"


def seconds_per_image(dataset) -> list[float]:
    """The segmentation time of every usable image of a segmented dataset (manifest column `seconds`)."""
    return [float(r["seconds"]) for r in dataset.rows if r.get("seconds")]


def fallback_markdown(note: Mapping[str, Any]) -> str:
    """Markdown saying that SAM2 was requested but the classical backend is used, and why
    (`note`: from `make_segmenter_with_fallback`)."""
    from semlab.textfmt import md_code

    return ("**SAM2 was requested but is unavailable; using the classical backend.** "
            f"Reason: {md_code(note['fallback_reason'])}")


def qa_summary(rows, excluded, top: int = 10) -> str:
    """How many masks of a segmented dataset are ok, flagged and errors (`rows`: all manifest
    rows), then the `top` most common reasons of the `excluded` ones."""
    from collections import Counter

    count = Counter(r["status"] for r in rows)
    lines = [f"{len(rows)} images: {count['ok']} ok, {count['flagged']} flagged, {count['error']} errors"]
    lines += [f"  {n:4d} x {reason}" for reason, n in Counter(r["reason"] for r in excluded).most_common(top)]
    return "\n".join(lines)


def format_score(score: Mapping[str, Any]) -> str:
    """`score_against_truth`'s result as text: images scored, IoU and share of true pixels
    per class (classes absent from both left out), then the three mean IoUs."""
    lines = [f"{score['split']} split: {score['n']} images scored, {score['n_excluded']} excluded by QA",
             f"{'class':<12}{'IoU':>8}{'share of true pixels':>24}"]
    for name, v in score["per_class"].items():
        share = score["true_pixel_fraction"][name]
        if share > 0 or not np.isnan(v):
            lines.append(f"{name:<12}{v:>8.3f}{share:>24.5f}")
    lines.append(f"mean IoU {score['mean_iou']:.3f} | structure mean IoU {score['mean_iou_structure']:.3f} | "
                 f"frequency-weighted IoU {score['frequency_weighted_iou']:.3f}")
    return "\n".join(lines)


def _ci3(v) -> str:
    val, lo, hi = v
    return f"{val:.3f} [{lo:.3f}, {hi:.3f}]" if np.isfinite(val) else "n/a"


def _prf_cells(s: Mapping[str, Any]) -> str:
    return " | ".join(_ci3((s[k]["value"], s[k]["ci_low"], s[k]["ci_high"])) for k in ("precision", "recall", "f1"))


def truth_table_markdown(ious: Mapping[str, Any], objects: Mapping[str, Any] | None = None,
                         objects_min_r: Mapping[str, Any] | None = None, oracle: Mapping[str, Any] | None = None,
                         pattern_objects: Mapping[str, Any] | None = None) -> str:
    """Notebook 10's simulated-truth table as Markdown: the structure classes by pixel
    IoU (`evaluate.class_iou_cis`), `defect` objects by one-to-one precision, recall and
    F1 (`semlab.metrics.objects.detection_scores`, all and above a radius), optionally
    `pattern` objects, and the oracle ceiling row (`evaluate.defect_oracle`); 95% CIs
    with images resampled."""
    lines = ["| what | score | value [95% CI] | n |", "|---|---|---|---|"]
    for name in ("background", "pattern", "hole"):
        if name in ious:
            lines.append(f"| {name} | pixel IoU | {_ci3(ious[name])} | {ious['n']} images |")
    if "structure" in ious:
        lines.append(f"| structure classes | mean pixel IoU | {_ci3(ious['structure'])} | {ious['n']} images |")
    if "defect" in ious:
        lines.append(f"| defect | pixel IoU (for reference) | {_ci3(ious['defect'])} | {ious['n']} images |")
    lines += ["", "| objects | precision | recall | F1 | true / predicted / matched |", "|---|---|---|---|---|"]
    for label, s in (("defect, all sizes", objects), (f"defect, radius >= {(objects_min_r or {}).get('min_radius_px', 0):g} px",
                                                     objects_min_r), ("pattern (particles)", pattern_objects)):
        if s:
            lines.append(f"| {label} | {_prf_cells(s)} | {s['n_true']} / {s['n_pred']} / {s['n_matched']} |")
    if oracle and oracle.get("n"):
        lines.append(f"| oracle ceiling (defect; told each particle's place, best threshold) | - | "
                     f"{_ci3(oracle['object_recall'])} | - | pixel IoU {_ci3(oracle['iou'])}, {oracle['n']} particles |")
    elif oracle is not None:
        lines.append("| oracle ceiling (defect) | - | - | - | no particle in the scored images |")
    return "\n".join(lines)


def size_table_markdown(rows: list[Mapping[str, Any]]) -> str:
    """`semlab.metrics.objects.size_table` rows as Markdown (radius = equivalent radius)."""
    lines = ["| radius | true | predicted | matched | precision | recall | F1 | radius error (px) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        e = r["size"]["radius_error_px"]
        lines.append(f"| {r['bin']} | {r['n_true']} | {r['n_pred']} | {r['n_matched']} | {_prf_cells(r)} | "
                     f"{_ci3((e['value'], e['ci_low'], e['ci_high']))} |")
    return "\n".join(lines)


def real_summary(seg) -> dict:
    """Tiles, frames, sets and the polarity chosen per frame of a segmented real dataset."""
    from collections import Counter

    rows = seg.all_rows
    frames = {r.get("group") or r["id"] for r in rows}
    pol = Counter(r.get("polarity") or "?" for r in rows)
    cover = [float(r["coverage_pattern"]) for r in seg.rows if r.get("coverage_pattern") not in (None, "")]
    return {"n_tiles": len(rows), "n_frames": len(frames), "frames": sorted(frames), "polarity": dict(pol),
            "pattern_coverage": float(np.mean(cover)) if cover else float("nan")}


def one_tile_per_frame(seg) -> list[str]:
    """One usable tile id per frame (manifest `group`) of a segmented real dataset: the
    middle one of the frame's tiles in id order, frames in name order."""
    by: dict[str, list[str]] = {}
    for r in seg.rows:
        by.setdefault(r.get("group") or r["id"], []).append(r["id"])
    return [sorted(ids)[len(ids) // 2] for _, ids in sorted(by.items())]


def _objects_metrics(metrics: dict, entity: str, s: Mapping[str, Any] | None, note: str) -> None:
    if not s:
        return
    for k, name in ((K.OBJECT_PRECISION, "precision"), (K.OBJECT_RECALL, "recall"), (K.OBJECT_F1, "f1")):
        v = s[name]
        if math.isfinite(v["value"]):
            metrics[K.key(entity, k)] = metric(v["value"], v["ci_low"], v["ci_high"], n=s["n_images"], note=note)
    e = s["size"]["radius_error_px"]
    if math.isfinite(e["value"]):
        metrics[K.key(entity, K.RADIUS_ERROR)] = metric(e["value"], e["ci_low"], e["ci_high"],
                                                        n=s["size"]["n_matched"], unit="px")


def make_dataset_metrics_doc(seg, *, source: str | Path, output: str | Path, backend: Mapping[str, Any],
                             edge_offset_px: float, n_calibrate: int | None, score: Mapping[str, Any] | None,
                             profile: str, figure: str = "segmentation_grid.png",
                             ious: Mapping[str, Any] | None = None, objects: Mapping[str, Any] | None = None,
                             objects_min_r: Mapping[str, Any] | None = None,
                             oracle: Mapping[str, Any] | None = None, real: Mapping[str, Any] | None = None) -> dict:
    """The metrics.json doc of notebook 10. `seg`: the segmented dataset; `backend`: the
    note of `make_segmenter_with_fallback`; `score`: `score_against_truth`'s result or
    None without ground truth (then the doc's domain is "real" and no IoU is reported).
    A class with no pixels in truth or prediction has no IoU: it is named in
    `extra["unavailable"]`. Issue 19: `ious` (`evaluate.class_iou_cis`) adds CIs to the
    class IoUs; `objects` / `objects_min_r` (`semlab.metrics.objects.detection_scores`)
    score defects as objects; `oracle` (`evaluate.defect_oracle`) is the ceiling row;
    `real` (`real_summary`) the tiles, frames and polarities of a real dataset."""
    secs = seconds_per_image(seg)
    n_seg = len(seg) + len(seg.excluded)
    metrics = {K.N_OK: metric(len(seg), n=n_seg, unit="images"),
               K.N_EXCLUDED: metric(len(seg.excluded), n=n_seg, unit="images"),
               K.EDGE_OFFSET: metric(edge_offset_px, n=n_calibrate or None, unit="px",
                                     note="fitted on training images" if n_calibrate else "not calibrated")}
    unavailable: dict[str, str] = {}
    if secs:
        metrics[K.MS_PER_IMAGE] = metric(float(np.mean(secs) * 1000), n=len(secs), unit="ms")
    else:
        unavailable[K.MS_PER_IMAGE] = "no image was segmented"
    headline = [K.MEAN_IOU_STRUCTURE, K.key("pattern", K.IOU), K.MS_PER_IMAGE]
    if score is not None:
        n = int(score["n"])
        for cls, v in score["per_class"].items():
            if math.isfinite(v):
                lo, hi = (ious[cls][1], ious[cls][2]) if ious and cls in ious else (None, None)
                metrics[K.key(cls, K.IOU)] = metric(v, lo, hi, n=n, note="pooled over the test split's pixels")
            else:
                unavailable[K.key(cls, K.IOU)] = "class absent from both truth and prediction"
        for k in (K.MEAN_IOU, K.MEAN_IOU_STRUCTURE, K.FREQ_WEIGHTED_IOU):
            if math.isfinite(score[k]):
                lo, hi = (ious["structure"][1], ious["structure"][2]) if (
                    k == K.MEAN_IOU_STRUCTURE and ious and "structure" in ious) else (None, None)
                metrics[k] = metric(score[k], lo, hi, n=n)
            else:
                unavailable[k] = "no class to average"
        _objects_metrics(metrics, "defect", objects, "objects matched one to one, IoU >= 0.3")
        if objects_min_r:
            _objects_metrics(metrics, K.min_radius_entity("defect", objects_min_r["min_radius_px"]), objects_min_r,
                             "objects of at least this radius")
        if oracle and oracle.get("n"):
            for name in ("iou", "object_recall"):
                v, lo, hi = oracle[name]
                metrics[K.key(K.ORACLE, "defect", K.IOU if name == "iou" else K.OBJECT_RECALL)] = metric(
                    v, lo, hi, n=oracle["n"], note="ceiling: told each particle's place, best threshold each")
        if objects and K.key("defect", K.OBJECT_F1) in metrics:
            headline = [K.MEAN_IOU_STRUCTURE, K.key("pattern", K.IOU), K.key("defect", K.OBJECT_F1), K.MS_PER_IMAGE]
    elif real:
        metrics[K.N_TILES] = metric(real["n_tiles"], n=real["n_tiles"], unit="tiles")
        metrics[K.N_FRAMES] = metric(real["n_frames"], n=real["n_frames"], unit="frames")
        metrics[K.N_DARK_POLARITY] = metric(real["polarity"].get("dark", 0), n=real["n_tiles"], unit="tiles")
        if math.isfinite(real["pattern_coverage"]):
            metrics[K.PATTERN_COVERAGE] = metric(real["pattern_coverage"], n=len(seg))
        headline = [K.N_TILES, K.N_FRAMES, K.N_OK, K.MS_PER_IMAGE]
    else:
        headline = [K.N_OK, K.N_EXCLUDED, K.MS_PER_IMAGE]
    extra: dict[str, Any] = {"profile": profile, "source": str(source), "output": str(output),
                             "backend_requested": backend["backend_requested"], "backend_used": backend["backend_used"],
                             "fallback_reason": backend["fallback_reason"]}
    if unavailable:
        extra[K.UNAVAILABLE] = unavailable
    domain, dataset, n = (("sim", f"{Path(source).name}, test split", int(score["n"])) if score is not None
                          else ("real", f"{Path(source).name}, all images", n_seg))
    return metrics_doc(NOTEBOOK, domain, dataset, n, metrics, headline=[k for k in headline if k in metrics],
                       figure=figure, **extra)
