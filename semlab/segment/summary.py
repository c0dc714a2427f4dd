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

__all__ = ["make_dataset_metrics_doc", "seconds_per_image", "qa_summary", "format_score", "fallback_markdown"]

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


def make_dataset_metrics_doc(seg, *, source: str | Path, output: str | Path, backend: Mapping[str, Any],
                             edge_offset_px: float, n_calibrate: int | None, score: Mapping[str, Any] | None,
                             profile: str, figure: str = "segmentation_grid.png") -> dict:
    """The metrics.json doc of notebook 10. `seg`: the segmented dataset; `backend`: the
    note of `make_segmenter_with_fallback`; `score`: `score_against_truth`'s result or
    None without ground truth (then the doc's domain is "real" and no IoU is reported).
    A class with no pixels in truth or prediction has no IoU: it is named in
    `extra["unavailable"]`."""
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
                metrics[K.key(cls, K.IOU)] = metric(v, n=n, note="pooled over the test split's pixels")
            else:
                unavailable[K.key(cls, K.IOU)] = "class absent from both truth and prediction"
        for k in (K.MEAN_IOU, K.MEAN_IOU_STRUCTURE, K.FREQ_WEIGHTED_IOU):
            if math.isfinite(score[k]):
                metrics[k] = metric(score[k], n=n)
            else:
                unavailable[k] = "no class to average"
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
