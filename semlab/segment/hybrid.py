"""`semlab segment --backend hybrid`: SAM2 boundaries with classical semantics.

SAM2's automatic masks know nothing of what a structure is; the classical segmenter
knows what it looks for but places edges by a threshold. The hybrid (as the contour
hybrid of issue 7, `semlab.contours.hybrid`, does for contours):

1. **Classical pass** (`ClassicalSegmenter`): segments, canonicalised with the rules of
   the run (bright polarity: `segment_image` has already inverted a dark frame).
2. **Prompts**: one box plus an interior positive point per connected structure of the
   prompted classes of that classical mask (`prompts_from_mask`, pattern and hole by
   default; particles are a few pixels across and stay classical).
3. **SAM2** (`Sam2Predictor`: one image embedding, one batched decoder call): per
   structure the mask logits, SAM2's predicted IoU and the stability score, combined
   into a confidence (`semlab.contours.confidence.confidence_score`).
4. **Per structure**: SAM2's mask -- of its connected components the one overlapping
   the classical structure most -- replaces the classical one when the confidence is
   at least `threshold` and the overlap with the classical structure is at least
   `min_overlap` (IoU); otherwise the classical segment stays, with the reason.
5. The segments (SAM2's or classical per structure, the classical dark phase minus
   the pixels SAM2 claimed and plus those of a replaced structure SAM2 did not claim,
   the classical particles) go through the same canonicalisation as every backend
   (`segment_image` does it), so the label scheme is the same.

Without SAM2 (no weights, sam2 not installed, or a file that is not a SAM2 checkpoint)
every structure keeps its classical segment and the reason is recorded
(`describe()["unavailable_reason"]`, dataset.json `hybrid`). The quality of SAM2's
boundaries on SEM images is **unmeasured** here: the tests run the plumbing on a
randomly initialised SAM2 saved in the official format, whose masks mean nothing.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from scipy import ndimage as ndi

from semlab import labels as L
from semlab.segment.base import Segment, check_image
from semlab.segment.canonical import CanonicalRules, canonicalize
from semlab.segment.classical import ClassicalSegmenter, ClassicalSettings

__all__ = ["HybridSegmenter", "make_hybrid_segmenter", "best_component"]


def best_component(mask: np.ndarray, structure: np.ndarray) -> tuple[np.ndarray, float]:
    """Of the connected components of `mask` the one overlapping `structure` most, and
    its IoU with `structure` (an empty mask and 0.0 if none overlaps)."""
    lab, n = ndi.label(mask)
    if n == 0:
        return np.zeros_like(mask, bool), 0.0
    hits = np.bincount(lab[structure], minlength=n + 1)
    hits[0] = 0
    k = int(np.argmax(hits))
    if hits[k] == 0:
        return np.zeros_like(mask, bool), 0.0
    comp = lab == k
    inter = float((comp & structure).sum())
    return comp, inter / float((comp | structure).sum())


def _give_to_nearest(segs: list[Segment], pixels: np.ndarray) -> list[Segment]:
    """Add `pixels` (a classical structure's pixels SAM2 did not claim) to the nearest
    classical dark-phase segment, so they are not left to the gap rules (which judge
    by brightness, and an edge rim is bright)."""
    dark = [k for k, s in enumerate(segs) if s.source.endswith("dark")]
    if not pixels.any() or not dark:
        return segs
    lab = np.zeros(pixels.shape, np.int32)
    for j, k in enumerate(dark, start=1):
        lab[segs[k].mask & (lab == 0)] = j
    _, (iy, ix) = ndi.distance_transform_edt(lab == 0, return_indices=True)
    near = np.where(pixels, lab[iy, ix], 0)
    out = list(segs)
    for j, k in enumerate(dark, start=1):
        add = near == j
        if add.any():
            out[k] = replace(segs[k], mask=segs[k].mask | add)
    return out


class HybridSegmenter:
    """Classical segments -> prompts -> SAM2 masks -> per structure SAM2 or classical
    (see the module docstring). `predictor`: a `semlab.contours.predictor.Sam2Predictor`
    or any object with `set_image(image)` and `predict(prompts)` returning objects with
    `structure_id`, `logits`, `predicted_iou`, `stability` (and optionally `threshold`);
    None: classical only, with `unavailable_reason`."""

    name = "hybrid"

    def __init__(self, predictor=None, classical: ClassicalSettings | None = None, *, threshold: float = 0.5,
                 min_overlap: float = 0.3, classes: Sequence[int] = (L.PATTERN, L.HOLE),
                 confidence: Callable | None = None, margin_px: float = 4.0, min_area_px: int = 16,
                 unavailable_reason: str | None = None):
        from semlab.contours.confidence import confidence_score

        if predictor is not None and not (hasattr(predictor, "set_image") and hasattr(predictor, "predict")):
            raise TypeError("predictor must have set_image(image) and predict(prompts) (e.g. a Sam2Predictor)")
        if not 0.0 <= min_overlap <= 1.0:
            raise ValueError(f"min_overlap must be in [0, 1], got {min_overlap}")
        self.predictor = predictor
        self.classical = ClassicalSegmenter(classical or ClassicalSettings())
        self.threshold = float(threshold)
        self.min_overlap = float(min_overlap)
        self.classes = tuple(int(c) for c in classes)
        self.confidence = confidence or confidence_score
        self.margin_px = float(margin_px)
        self.min_area_px = int(min_area_px)
        self.unavailable_reason = None if predictor is not None else (unavailable_reason or "no SAM2 predictor given")
        self.last: list[dict] = []  # per structure of the last image: source, reason, confidence

    @property
    def settings(self) -> ClassicalSettings:
        """The classical pass's settings (`segment_image` flattens the frame once, for
        the rules too, when they ask for it: see `without_flattening`)."""
        return self.classical.settings

    def without_flattening(self) -> "HybridSegmenter":
        """The same hybrid (same predictor, same `last` record) whose classical pass
        does not flatten illumination (the caller has)."""
        twin = copy.copy(self)
        twin.classical = ClassicalSegmenter(replace(self.classical.settings, flatten_degree=0))
        return twin

    def describe(self) -> dict[str, Any]:
        pred = self.predictor.describe() if self.predictor is not None and hasattr(self.predictor, "describe") else None
        return {"backend": "hybrid", "threshold": self.threshold, "min_overlap": self.min_overlap,
                "classes": [L.CLASSES[c].name for c in self.classes], "margin_px": self.margin_px,
                "min_area_px": self.min_area_px,
                "sam2": pred, "sam2_available": self.predictor is not None,
                "unavailable_reason": self.unavailable_reason, "classical": self.classical.describe(),
                "quality": "unmeasured (no SAM2 weights were available when this was built)"}

    def segment(self, image: np.ndarray, source: str | None = None) -> list[Segment]:
        from semlab.contours.prompts import label_structures, prompts_from_structures

        img = check_image(image, min_side=self.classical.settings.min_side, source=source, backend="hybrid")
        segs = self.classical.segment(img, source=source)
        self.last.clear()  # in place: a `without_flattening` twin shares it
        if self.predictor is None:
            self.last.append({"source": "classical", "reason": self.unavailable_reason})
            return segs
        can = canonicalize(img, segs, CanonicalRules(polarity="bright"))
        inst, class_of = label_structures(can.mask, self.classes, min_area=self.min_area_px)
        if not class_of:
            return segs
        prompts = prompts_from_structures(inst, class_of, margin_px=self.margin_px)
        self.predictor.set_image(img)
        answers = {int(a.structure_id): a for a in self.predictor.predict(prompts)}
        out: list[Segment] = []
        taken = np.zeros(img.shape, bool)
        for sid, label in sorted(class_of.items()):
            st = inst == sid
            a = answers.get(sid)
            rec = {"structure": sid, "class": L.CLASSES[label].name, "source": "classical"}
            if a is None:
                rec["reason"] = "no SAM2 answer"
            else:
                conf = float(np.asarray(self.confidence(float(a.predicted_iou), float(a.stability))).reshape(-1)[0])
                comp, iou = best_component(np.asarray(a.logits) > float(getattr(a, "threshold", 0.0)), st)
                rec.update(confidence=round(conf, 4), overlap_iou=round(iou, 4))
                if conf < self.threshold:
                    rec["reason"] = f"confidence {conf:.2f} < {self.threshold:g}"
                elif iou < self.min_overlap:
                    rec["reason"] = f"overlap with the classical structure {iou:.2f} < {self.min_overlap:g}"
                else:
                    rec.update(source="sam2", reason="")
                    out.append(Segment(comp, score=float(a.predicted_iou), stability=float(a.stability),
                                       source="hybrid:sam2", info={"structure": sid, "confidence": conf}))
                    taken |= st
            self.last.append(rec)
        # the classical segments SAM2 replaced (those mostly inside a replaced structure)
        # go; the other bright / dark ones give up the pixels SAM2's masks claim
        sam2 = np.zeros(img.shape, bool)
        for s in out:
            sam2 |= s.mask
        kept, released = [], np.zeros(img.shape, bool)
        for s in segs:
            if s.source.endswith(("bright", "bright-ws", "dark")):
                if taken[s.mask].mean() > 0.5:
                    released |= s.mask & ~sam2
                    continue
                if (s.mask & sam2).any():
                    s = replace(s, mask=s.mask & ~sam2)
                    if not s.mask.any():
                        continue
            kept.append(s)
        return _give_to_nearest(kept, released) + out

    def summary(self) -> dict[str, Any]:
        """How many structures of the last image used SAM2, and why the others did not."""
        n_sam2 = sum(r["source"] == "sam2" for r in self.last)
        reasons: dict[str, int] = {}
        for r in self.last:
            if r["source"] != "sam2":
                key = str(r.get("reason", "")).split(" ")[0] if self.predictor is not None else str(r.get("reason"))
                reasons[key] = reasons.get(key, 0) + 1
        return {"n_structures": len(self.last) if self.predictor is not None else 0, "n_sam2": n_sam2,
                "classical_reasons": reasons}


def make_hybrid_segmenter(model: str = "sam2.1_hiera_tiny", checkpoint: str | Path | None = None,
                          image_size: int = 512, *, classical: dict | None = None, fallback: bool = True,
                          **kwargs) -> tuple[HybridSegmenter, dict]:
    """A hybrid with SAM2 `model` (weights found by `semlab.weights`, or `checkpoint`;
    never downloaded), or -- without them and with `fallback` -- classical only, with
    the reason. Returns (segmenter, note for dataset.json). Without `fallback` a missing
    SAM2 raises FileNotFoundError naming what is missing."""
    from semlab.contours.hybrid import sam2_unavailable_reason

    settings = ClassicalSettings(**(classical or {}))
    reason = sam2_unavailable_reason(model, checkpoint)
    pred = None
    if reason is None:
        from semlab.contours.predictor import Sam2Predictor
        from semlab.segment.sam2_model import Sam2CheckpointError
        from semlab.weights import WeightsNotFound

        try:
            pred = Sam2Predictor(model, checkpoint, image_size)
        except (WeightsNotFound, Sam2CheckpointError) as e:
            reason = f"SAM2 weights unavailable: {e}"
    if pred is None and not fallback:
        raise FileNotFoundError(f"--backend hybrid: {reason}")
    seg = HybridSegmenter(pred, settings, unavailable_reason=reason, **kwargs)
    note = {"sam2_model": model, "sam2_available": pred is not None, "unavailable_reason": reason,
            "quality": "SAM2 boundary quality on SEM images unmeasured (tested with random weights only)"}
    return seg, note
